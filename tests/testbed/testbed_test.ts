/**
 * Tests of the real Docker test bed. They need root on Debian or a running engine; when
 * the bed cannot be set up they fail (never skip).
 */

import { deepStrictEqual, match, ok } from "node:assert/strict";
import {
  ALL_KINDS,
  ensureTestBed,
  LARGE_FILE_SIZE,
  largeFileBytes,
  removeTestContainer,
  smallDataEntries,
  startTestContainer,
  type TestBed,
  treeEntries,
} from "../../tasks/testbed/mod.ts";
import { docker } from "../../tasks/testbed/engine.ts";
import { pauseElf } from "../../tasks/testbed/pause_elf.ts";

async function withContainer(
  bed: TestBed,
  kind: (typeof ALL_KINDS)[number],
  body: (id: string) => Promise<void>,
): Promise<void> {
  const id = await startTestContainer(bed, kind);
  try {
    await body(id);
  } finally {
    await removeTestContainer(bed, id);
  }
}

async function exec(bed: TestBed, id: string, argv: string[]) {
  return await docker(bed.dockerHost, ["exec", id, ...argv], false);
}

/** Raw bytes of `docker exec` stdout (binary-safe). */
async function execBytes(bed: TestBed, id: string, argv: string[]): Promise<Uint8Array> {
  const out = await new Deno.Command("docker", {
    args: ["--host", bed.dockerHost, "exec", id, ...argv],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  deepStrictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  return out.stdout;
}

/** Paths in the container's filesystem, from `docker export`. */
async function exportedPaths(bed: TestBed, id: string): Promise<string[]> {
  const out = await new Deno.Command("sh", {
    args: ["-c", `docker --host '${bed.dockerHost}' export '${id}' | tar -tf -`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  deepStrictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.length > 0)
    .map((l) => l.replace(/^\.?\//, "").replace(/\/$/, ""));
}

Deno.test("testbed: the four images exist with per-recipe tags", async () => {
  const bed = await ensureTestBed();
  for (const kind of ALL_KINDS) {
    match(bed.images[kind], new RegExp(`^dockerfuse-test/${kind}:[0-9a-f]{12}$`));
    const r = await docker(bed.dockerHost, ["image", "inspect", bed.images[kind]], false);
    deepStrictEqual(r.code, 0, `image ${bed.images[kind]} missing: ${r.stderr}`);
  }
});

Deno.test("testbed: a second ensureTestBed is idempotent and returns the same images", async () => {
  const first = await ensureTestBed();
  const second = await ensureTestBed({ kinds: ["static"] });
  deepStrictEqual(second.images, first.images);
  deepStrictEqual(second.dockerHost, first.dockerHost);
});

Deno.test("testbed: arm64 image is arm64 and its container runs aarch64 under qemu", async () => {
  const bed = await ensureTestBed({ kinds: ["arm64"] });
  const inspect = await docker(bed.dockerHost, [
    "image",
    "inspect",
    "-f",
    "{{.Architecture}}",
    bed.images.arm64,
  ]);
  deepStrictEqual(inspect.stdout.trim(), "arm64");
  await withContainer(bed, "arm64", async (id) => {
    const r = await exec(bed, id, ["uname", "-m"]);
    deepStrictEqual(r.code, 0, r.stderr);
    deepStrictEqual(r.stdout.trim(), "aarch64");
    deepStrictEqual((await exec(bed, id, ["cat", "/data/hello.txt"])).stdout, "hello from arm64\n");
  });
});

Deno.test("testbed: musl image has the musl loader and no glibc", async () => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  await withContainer(bed, "musl", async (id) => {
    deepStrictEqual((await exec(bed, id, ["test", "-e", "/lib/ld-musl-x86_64.so.1"])).code, 0);
    ok((await exec(bed, id, ["test", "-e", "/lib/x86_64-linux-gnu/libc.so.6"])).code !== 0);
    ok((await exec(bed, id, ["test", "-e", "/lib64/ld-linux-x86-64.so.2"])).code !== 0);
    const found = await exec(bed, id, ["find", "/", "-xdev", "-name", "libc.so.6"]);
    deepStrictEqual(found.stdout.trim(), "");
    deepStrictEqual((await exec(bed, id, ["cat", "/data/hello.txt"])).stdout, "hello from musl\n");
  });
});

Deno.test("testbed: static image runs its keep-alive binary and has no shell or libc", async () => {
  const bed = await ensureTestBed({ kinds: ["static"] });
  await withContainer(bed, "static", async (id) => {
    const state = await docker(bed.dockerHost, [
      "container",
      "inspect",
      "-f",
      "{{.State.Running}}",
      id,
    ]);
    deepStrictEqual(state.stdout.trim(), "true");
    const sh = await exec(bed, id, ["/bin/sh", "-c", "true"]);
    ok(sh.code !== 0, "exec /bin/sh unexpectedly worked");
    const paths = await exportedPaths(bed, id);
    ok(paths.includes("pause"), `no /pause in ${paths.join(" ")}`);
    ok(!paths.some((p) => p === "bin/sh" || /(^|\/)(libc\.so|ld-)/.test(p)), paths.join(" "));
    for (const e of smallDataEntries("static")) {
      ok(paths.includes(`data/${e.path}`), `data/${e.path} missing`);
    }
  });
});

Deno.test("testbed: glibc image has the file tree and the large file", async () => {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  await withContainer(bed, "glibc", async (id) => {
    const files = treeEntries().filter((e) => e.type === "file").length;
    ok(files >= 300, `only ${files} files in the tree recipe`);
    const count = await exec(bed, id, ["sh", "-c", "find /data/tree -type f | wc -l"]);
    deepStrictEqual(Number(count.stdout.trim()), files);
    const size = await exec(bed, id, ["stat", "-c", "%s", "/data/large.bin"]);
    deepStrictEqual(Number(size.stdout.trim()), LARGE_FILE_SIZE);
    const check = await exec(bed, id, ["sh", "-c", "cd /data && sha256sum -c large.bin.sha256"]);
    deepStrictEqual(check.code, 0, check.stdout + check.stderr);
    const block = 1000;
    const bytes = await execBytes(bed, id, [
      "dd",
      "if=/data/large.bin",
      "bs=4096",
      `skip=${block}`,
      "count=1",
      "status=none",
    ]);
    deepStrictEqual(bytes, largeFileBytes(block * 4096, 4096));
    deepStrictEqual((await exec(bed, id, ["cat", "/data/hello.txt"])).stdout, "hello from glibc\n");
  });
});

Deno.test("testbed: test containers have no network and are removed by name", async () => {
  const bed = await ensureTestBed({ kinds: ["static"] });
  const name = `dfh-testbed-${Deno.pid}`;
  const id = await startTestContainer(bed, "static", { name });
  try {
    match(id, /^[0-9a-f]{64}$/);
    const net = await docker(bed.dockerHost, [
      "container",
      "inspect",
      "-f",
      "{{.HostConfig.NetworkMode}}",
      name,
    ]);
    deepStrictEqual(net.stdout.trim(), "none");
  } finally {
    await removeTestContainer(bed, name);
  }
  const gone = await docker(bed.dockerHost, ["container", "inspect", name], false);
  ok(gone.code !== 0, "container still exists after removeTestContainer");
  await removeTestContainer(bed, name); // removing a missing container is not an error
});

Deno.test("testbed: largeFileBytes is consistent across offsets and clipped at the end", () => {
  const whole = largeFileBytes(0, 64);
  deepStrictEqual(largeFileBytes(5, 10), whole.slice(5, 15));
  deepStrictEqual(largeFileBytes(LARGE_FILE_SIZE - 3, 10).length, 3);
  deepStrictEqual(largeFileBytes(LARGE_FILE_SIZE, 10).length, 0);
  ok(whole.some((b, i) => b !== whole[(i + 4) % 64]), "pattern repeats every word");
});

Deno.test("testbed: pause executable is a static x86_64 ELF with one loadable segment", () => {
  const elf = pauseElf();
  const v = new DataView(elf.buffer);
  deepStrictEqual([...elf.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]);
  deepStrictEqual(v.getUint16(18, true), 0x3e);
  deepStrictEqual(v.getUint16(56, true), 1);
  deepStrictEqual(Number(v.getBigUint64(64 + 32, true)), elf.length);
});
