// A file the change feed vouches for is opened from the kernel's cache (no round trip); when
// the kernel then lacks its pages, its first READ opens it for real, and that open brings the
// file's identity and first bytes along: one round trip, not open + fstat + read.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { lstatOrNone, until, withContainer } from "./helpers.ts";

/** RPCs of each method the client logged (--debug) in `log`. */
function rpcCounts(log: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of log.matchAll(/debug rpc \d+ (\w+) /g)) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
  return counts;
}

Deno.test("live: a vouched file whose pages were dropped is read with one round trip", async () => {
  await withContainer("open", ["--debug"], async (mnt, inside, stderr) => {
    const want = "0123456789abcdef\n".repeat(600); // 10,200 bytes
    await inside.run(`mkdir -p /d && printf '%s' '${want}' > /d/f && sync`);
    const f = `${mnt}/d/f`;
    ok(await until(async () => (await Deno.readTextFile(f).catch(() => "")) === want) < 5000);
    // Cached by the kernel (pages and attributes); then only the pages are dropped.
    equal(await Deno.readTextFile(f), want);
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "1");
    const from = stderr().length;
    equal(await Deno.readTextFile(f), want);
    // The client's stderr reaches us on its own schedule: wait for the line, then a little more.
    const opened = /Opened '\/d\/f' \(opened from the kernel's cache\) for its first read/;
    ok(await until(() => opened.test(stderr().slice(from)), 5000) < 5000, stderr().slice(from));
    await new Promise((r) => setTimeout(r, 300));
    const log = stderr().slice(from);
    const counts = rpcCounts(log);
    deepStrictEqual(
      [counts.open ?? 0, counts.fstat ?? 0, counts.read ?? 0],
      [1, 0, 0],
      `rpcs: ${JSON.stringify(counts)}`,
    );

    // Replaced inside the container meanwhile: the open sees another file and the read fails
    // with ESTALE rather than showing the new file's bytes under the old inode, and the mount
    // then shows the new file.
    const handle = await Deno.open(f, { read: true });
    try {
      await Deno.writeTextFile("/proc/sys/vm/drop_caches", "1");
      await inside.run("echo other > /d/g && mv /d/g /d/f");
      const buf = new Uint8Array(64);
      const got = await handle.read(buf).then((n) => new TextDecoder().decode(buf.subarray(0, n!)))
        .catch((e: Error) => e);
      // Either the read came before the event's notice reached the handle (old bytes, which the
      // old inode still holds) or it failed as stale; never the new file's bytes.
      ok(
        got instanceof Error ? /stale/i.test(got.message) : want.startsWith(got),
        `read through the old handle: ${got}`,
      );
    } finally {
      handle.close();
    }
    ok(await until(async () => (await Deno.readTextFile(f).catch(() => "")) === "other\n") < 5000);
  });
});

Deno.test("live: a directory made through the mount stays known empty while watched", async () => {
  await withContainer("mkdir", ["--debug"], async (mnt, inside, stderr) => {
    const d = `${mnt}/made`;
    await Deno.mkdir(d);
    // Past the 1 s listing timeout: the feed vouches for the (empty) listing now.
    await new Promise((r) => setTimeout(r, 1500));
    const from = stderr().length;
    for (let i = 0; i < 20; i++) await Deno.writeTextFile(`${d}/f${i}`, `${i}`);
    await new Promise((r) => setTimeout(r, 300));
    // Each create's lookup of its new name is answered locally; what asks is the lookup of
    // `made` itself in the (unlisted) root and the root's attributes, once each.
    const asked = rpcCounts(stderr().slice(from)).lstat ?? 0;
    ok(asked <= 3, `${asked} lstat round trips for 20 new names`);
    // A name made inside the container is an event: no longer known absent.
    await inside.run("echo x > /made/theirs");
    ok(await until(async () => (await lstatOrNone(`${d}/theirs`)) !== undefined) < 5000);
  });
});

/** FUSE requests of each opcode the client logged (--debug) in `log`. */
function requestCounts(log: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of log.matchAll(/debug rx \d+ ([A-Z_]+) /g)) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
  return counts;
}

Deno.test("live: names served from a walk past the long timeout get it again", async () => {
  // A long timeout of 5 s: past it, the kernel asks again, and the client answers from what its
  // walk still holds (vouched by the feed). Those answers must carry the long timeout again, not
  // the 1 s one, or the kernel asks every second from then on.
  await withContainer(
    "walked",
    ["--debug", "-o", "live_timeout=5"],
    async (mnt, inside, stderr) => {
      await inside.run(
        "mkdir -p /w/a/b/c && for d in /w /w/a /w/a/b /w/a/b/c; do " +
          "i=0; while [ $i -lt 30 ]; do echo $i > $d/f$i; i=$((i+1)); done; done",
      );
      const walk = async (): Promise<number> => {
        let n = 0;
        for await (const _ of walkTree(`${mnt}/w`)) n++;
        return n;
      };
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      equal(await walk(), 123);
      await sleep(5500); // past the long timeout: the kernel asks again
      equal(await walk(), 123);
      await sleep(1600); // past the 1 s timeouts, within the 5 s ones
      const from = stderr().length;
      equal(await walk(), 123);
      await sleep(300);
      const counts = requestCounts(stderr().slice(from));
      deepStrictEqual(
        [counts.LOOKUP ?? 0, counts.GETATTR ?? 0],
        [0, 0],
        `requests: ${JSON.stringify(counts)}`,
      );
    },
  );
});

/** Every path under `dir` (lstat of each, as `ls -lR` does), depth first. */
async function* walkTree(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    await Deno.lstat(path);
    yield path;
    if (e.isDirectory) yield* walkTree(path);
  }
}
