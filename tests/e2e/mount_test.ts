// dockerfuse end to end against the real engine: each test image mounted by the CLI as a user
// runs it, changes made through the mount checked from inside the container.

import { deepStrictEqual, ok } from "node:assert/strict";
import {
  ALL_KINDS,
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
} from "../../tasks/testbed/mod.ts";
import { startTlsDockerd } from "../docker/tls_engine.ts";
import { docker, dockerfuse, isMounted, readInside, sh, startMount, withMount } from "./harness.ts";

async function shOk(mountpoint: string, script: string): Promise<string> {
  const r = await sh(mountpoint, script);
  if (r.code !== 0) throw new Error(`'${script}' failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

for (const kind of ALL_KINDS) {
  Deno.test(`e2e ${kind}: read, write, rename, symlink, chmod; seen inside; SIGTERM unmounts`, async () => {
    await withMount(kind, async (m) => {
      const M = m.mountpoint;
      deepStrictEqual(await Deno.readTextFile(`${M}/data/hello.txt`), `hello from ${kind}\n`);
      await shOk(
        M,
        'mkdir "$M/data/new" && printf "written from the host" > "$M/data/new/f.txt" && ' +
          'mv "$M/data/new/f.txt" "$M/data/new/g.txt" && ln -s g.txt "$M/data/new/link" && ' +
          'chmod 600 "$M/data/new/g.txt" && rm "$M/data/empty"',
      );
      deepStrictEqual(await readInside(m.container, "/data/new/g.txt"), "written from the host");
      const listing = await shOk(
        M,
        'ls -la "$M/data/new"; readlink "$M/data/new/link"; ls "$M/data"',
      );
      ok(/-rw------- .* g\.txt/.test(listing), listing);
      ok(listing.includes("\ng.txt\n"), listing);
      ok(!/\bempty\b/.test(listing.split("\n").slice(-6).join("\n")), listing);
      const diff = await docker(["diff", m.container]);
      ok(!diff.stdout.includes(".dockerfuse"), `satellite files left behind:\n${diff.stdout}`);
      deepStrictEqual(await m.stop("SIGTERM"), 0, m.stderr());
      ok(!(await isMounted(M)), "SIGTERM left the mount in place");
    });
  });
}

Deno.test("e2e glibc: a 64 MiB file reads back intact; ls -lR of the tree works", async () => {
  await withMount("glibc", async (m) => {
    const sum = await shOk(m.mountpoint, 'sha256sum "$M/data/large.bin" | cut -d" " -f1');
    const expected = (await readInside(m.container, "/data/large.bin.sha256")).split(" ")[0];
    deepStrictEqual(sum.trim(), expected!.trim());
    const files = await shOk(m.mountpoint, 'ls -lR "$M/data/tree" | grep -c "^-"');
    ok(Number(files) >= 300, files);
  });
});

Deno.test("e2e: with --no-reconnect, stopping the container ends the mount with exit code 8 and no stale mount", async () => {
  await withMount("musl", async (m) => {
    await docker(["kill", m.container]);
    const code = await m.stop("SIGCONT"); // no-op signal: just wait for the client to notice
    deepStrictEqual(code, 8, m.stderr());
    ok(/stopped|ended/.test(m.stderr()), m.stderr());
    ok(!(await isMounted(m.mountpoint)), "a stale mount was left behind");
  }, { args: ["--no-reconnect"] });
});

Deno.test("e2e: --path mounts a subdirectory; --read-only refuses writes with EROFS", async () => {
  await withMount("musl", async (m) => {
    deepStrictEqual(await Deno.readTextFile(`${m.mountpoint}/hello.txt`), "hello from musl\n");
    const r = await sh(m.mountpoint, 'echo x > "$M/new.txt"');
    ok(r.code !== 0 && /read-only/i.test(r.stderr), r.stderr);
  }, { args: ["--path", "/data", "--read-only"] });
});

Deno.test("e2e: the original tool's flags (-id/-mount) still mount", async () => {
  await withMount("musl", async (m) => {
    deepStrictEqual(await Deno.readTextFile(`${m.mountpoint}/data/hello.txt`), "hello from musl\n");
  }, { argv: ["-id", "{container}", "-mount", "{mountpoint}"] });
});

Deno.test("e2e: a stale mount left by a killed client is recovered by the next mount", async () => {
  await withMount("musl", async (first) => {
    await first.stop("SIGKILL");
    ok(await isMounted(first.mountpoint), "expected the killed client's mount to be left");
    const second = await startMount("musl", {
      container: first.container,
      mountpoint: first.mountpoint,
    });
    try {
      deepStrictEqual(
        await Deno.readTextFile(`${second.mountpoint}/data/hello.txt`),
        "hello from musl\n",
      );
      ok(second.stderr().includes("stale"), second.stderr());
      deepStrictEqual(await second.stop(), 0);
    } finally {
      await second.cleanup();
    }
  });
});

Deno.test("e2e: unmount subcommand, and clear errors for a missing container", async () => {
  await withMount("musl", async (m) => {
    const r = await dockerfuse(["unmount", m.mountpoint]);
    deepStrictEqual(r.code, 0, r.stderr);
    deepStrictEqual(await m.stop("SIGCONT"), 0, m.stderr());
    ok(!(await isMounted(m.mountpoint)));
  });
  const dir = await Deno.makeTempDir();
  try {
    const r = await dockerfuse(["mount", "no-such-container-dockerfuse", dir]);
    deepStrictEqual(r.code, 4, r.stderr);
    ok(/no-such-container-dockerfuse/.test(r.stderr), r.stderr);
  } finally {
    await Deno.remove(dir);
  }
});

Deno.test("e2e: mounts a container of a remote engine over verified TLS (tcp://127.0.0.1)", async () => {
  const remote = await startTlsDockerd(await ensureTestBed({ kinds: ["musl"] }));
  try {
    await withMount("musl", async (m) => {
      deepStrictEqual(
        await Deno.readTextFile(`${m.mountpoint}/data/hello.txt`),
        "hello from musl\n",
      );
      await Deno.writeTextFile(`${m.mountpoint}/data/remote.txt`, "over tls");
      deepStrictEqual(await shOk(m.mountpoint, 'cat "$M/data/remote.txt"'), "over tls");
      deepStrictEqual(await m.stop(), 0, m.stderr());
    }, {
      container: remote.containerId,
      env: {
        DOCKER_HOST: `tcp://127.0.0.1:${remote.port}`,
        DOCKER_TLS_VERIFY: "1",
        DOCKER_CERT_PATH: remote.certDir,
      },
    });
  } finally {
    await remote.stop();
  }
});

Deno.test("e2e: --daemon returns once the mount answers; unmount ends the background server", async () => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const container = await startTestContainer(bed, "musl");
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-e2e-" });
  try {
    const r = await dockerfuse(["mount", "--daemon", container, dir]);
    deepStrictEqual(r.code, 0, r.stderr);
    const pid = Number(/pid (\d+)/.exec(r.stderr)?.[1]);
    ok(pid > 0, r.stderr);
    // Answers right away: the parent returned only after the mount was ready.
    deepStrictEqual(await Deno.readTextFile(`${dir}/data/hello.txt`), "hello from musl\n");
    const u = await dockerfuse(["unmount", dir]);
    deepStrictEqual(u.code, 0, u.stderr);
    const deadline = Date.now() + 10_000;
    while (await Deno.stat(`/proc/${pid}`).then(() => true, () => false)) {
      ok(Date.now() < deadline, `background dockerfuse ${pid} still running after unmount`);
      await new Promise((done) => setTimeout(done, 50));
    }
    ok(!(await isMounted(dir)));
  } finally {
    if (await isMounted(dir)) await new Deno.Command("umount", { args: ["-l", dir] }).output();
    await removeTestContainer(bed, container);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e: version and help answer without an engine", async () => {
  const v = await dockerfuse(["version"]);
  deepStrictEqual(v.code, 0);
  ok(/^dockerfuse \d+\.\d+\.\d+ \(protocol \d+/.test(v.stdout), v.stdout);
  const legacy = await dockerfuse(["-version"]);
  deepStrictEqual(legacy.stdout, v.stdout);
  const help = await dockerfuse(["mount", "--help"]);
  deepStrictEqual(help.code, 0);
  ok(
    help.stdout.includes("--read-only") && help.stdout.includes("dockerfuse mount"),
    help.stdout,
  );
  const bad = await dockerfuse(["mount", "--attr-timeout", "soon", "c", "/tmp"]);
  deepStrictEqual(bad.code, 2, bad.stderr);
});
