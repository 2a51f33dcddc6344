// Container-side errors pass through the mount unchanged: ENOSPC from a full tmpfs, EROFS from a
// read-only rootfs, EACCES when the exec user is not root.

import { deepStrictEqual, ok } from "node:assert/strict";
import { ensureTestBed, startTestContainer } from "../../tasks/testbed/mod.ts";
import { docker, readInside, sh, withMount } from "./helpers.ts";

/** Starts a musl test container with extra `docker run` options; returns its id. */
async function runMusl(options: string[]): Promise<string> {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  return await startTestContainer(bed, "musl", { runArgs: options });
}

async function withContainer(options: string[], fn: (id: string) => Promise<void>): Promise<void> {
  const id = await runMusl(options);
  try {
    await fn(id);
  } finally {
    await docker(["rm", "-f", "-v", id], false);
  }
}

Deno.test("ENOSPC from a full 1 MiB tmpfs in the container reaches the writer", async () => {
  await withContainer(["--tmpfs", "/data2:size=1m,mode=1777"], async (id) => {
    await withMount("musl", async (m) => {
      const r = await sh(
        m.mountpoint,
        'dd if=/dev/zero of="$M/data2/big" bs=64k count=64 2>&1; echo "rc=$?"',
      );
      ok(/No space left on device/.test(r.stdout) && !/rc=0/.test(r.stdout), r.stdout);
      // The mount stays usable once space is freed.
      const again = await sh(m.mountpoint, 'rm "$M/data2/big" && echo ok > "$M/data2/small"');
      deepStrictEqual(again.code, 0, again.stderr);
      deepStrictEqual((await docker(["exec", id, "cat", "/data2/small"])).stdout, "ok\n");
    }, { container: id });
  });
});

Deno.test("EROFS from a read-only rootfs (satellite uploaded into the writable volume)", async () => {
  // A bind mount, not a named volume: volume lookups may consult (slow) volume plugins.
  const vol = await Deno.makeTempDir({ prefix: "dfh-vol-" });
  await withContainer(["--read-only", "-v", `${vol}:/vol`], async (id) => {
    await withMount("musl", async (m) => {
      const r = await sh(m.mountpoint, 'echo x > "$M/data/new.txt"');
      ok(r.code !== 0 && /Read-only file system/.test(r.stderr), r.stderr);
      const mk = await sh(m.mountpoint, 'mkdir "$M/data/d"');
      ok(mk.code !== 0 && /Read-only file system/.test(mk.stderr), mk.stderr);
      // The writable volume still takes writes.
      const w = await sh(m.mountpoint, 'echo y > "$M/vol/ok.txt" && cat "$M/vol/ok.txt"');
      deepStrictEqual(w.stdout, "y\n", w.stderr);
      const left = await docker(["exec", id, "ls", "-A", "/vol"]);
      deepStrictEqual(left.stdout.trim(), "ok.txt", "satellite files left in the volume");
    }, { container: id });
  }).finally(() => Deno.remove(vol, { recursive: true }));
});

Deno.test("EACCES when the exec user is not root (--user 65534)", async () => {
  await withMount("musl", async (m) => {
    deepStrictEqual(await Deno.readTextFile(`${m.mountpoint}/data/hello.txt`), "hello from musl\n");
    const r = await sh(m.mountpoint, 'echo x >> "$M/data/hello.txt"');
    ok(r.code !== 0 && /Permission denied/.test(r.stderr), r.stderr);
    const mk = await sh(m.mountpoint, 'mkdir "$M/etc/dfh-test"');
    ok(mk.code !== 0 && /Permission denied/.test(mk.stderr), mk.stderr);
    const ls = await sh(m.mountpoint, 'ls "$M/root"');
    ok(ls.code !== 0 && /Permission denied/.test(ls.stderr), ls.stderr);
    deepStrictEqual(await readInside(m.container, "/data/hello.txt"), "hello from musl\n");
  }, { args: ["--user", "65534"] });
});
