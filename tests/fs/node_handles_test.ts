// Node handles (issue 13): a directory the kernel knows is reached through the satellite's
// descriptor of it, not by a path from the root; the descriptors stay within their budget, go
// back when the kernel forgets the directories, and past the budget paths still work.

import { deepStrictEqual, ok as assert } from "node:assert/strict";
import { type MountedFs, mountLocal, sh } from "./harness.ts";

async function ok(fs: MountedFs, script: string): Promise<string> {
  const r = await sh(fs, script);
  if (r.code !== 0) throw new Error(`'${script}' failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** Descriptors the satellite process holds. */
async function satelliteFds(fs: MountedFs): Promise<number> {
  let n = 0;
  for await (const _ of Deno.readDir(`/proc/${fs.satellite.child.pid}/fd`)) n++;
  return n;
}

/** Waits up to `ms` for `done`; answers whether it came. */
async function until(done: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 50) {
    if (await done()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return await done();
}

Deno.test("node handles: what a process makes in its directory lands there after the container renamed it", async () => {
  const fs = await mountLocal();
  try {
    // As on a local filesystem: the working directory is the inode, whatever its name now.
    const out = await ok(
      fs,
      'mkdir "$M/w" && cd "$M/w" && mv "$B/w" "$B/moved" && mkdir "$B/w" && ' +
        'echo made > f && mkdir sub && ls "$B/moved" && echo -- && ls "$B/w"',
    );
    deepStrictEqual(out, "f\nsub\n--\n");
    deepStrictEqual(await Deno.readTextFile(`${fs.backing}/moved/f`), "made\n");
  } finally {
    await fs.close();
  }
});

Deno.test("node handles: 1,500 directories under a budget of 1,000 descriptors, given back when forgotten", async () => {
  const budget = 1000;
  const fs = await mountLocal({ satelliteArgs: ["--node-budget", String(budget)] });
  try {
    const base = await satelliteFds(fs);
    // 1,500 directories of 3 files each (6,000 entries), made and filled through the mount.
    await ok(
      fs,
      `python3 -c '
import os
t = os.environ["M"] + "/t"
os.mkdir(t)
for d in range(1500):
    os.mkdir(f"{t}/d{d}")
for d in range(1500):
    for f in range(3):
        with open(f"{t}/d{d}/f{f}", "w") as out:
            out.write(f"{d}.{f}")
'`,
    );
    const held = await satelliteFds(fs) - base;
    assert(held <= budget + 8, `${held} descriptors held past the budget of ${budget}`);
    assert(held >= budget - 8, `only ${held} descriptors held: the directories got no handles`);
    // Directories past the budget were reached by path: every file is where it belongs.
    deepStrictEqual(await ok(fs, 'find "$M/t" | wc -l'), "6001\n");
    deepStrictEqual(await ok(fs, 'cat "$B/t/d0/f2" "$B/t/d1499/f0"'), "0.21499.0");
    deepStrictEqual(await ok(fs, 'cat "$M/t/d999/f1" "$M/t/d1000/f1"'), "999.11000.1");
    // The kernel forgets the directories: their descriptors go back.
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "2");
    assert(
      await until(async () => await satelliteFds(fs) - base < 50, 10_000),
      `${await satelliteFds(fs) - base} descriptors still held after the kernel forgot`,
    );
    // And the budget serves new directories again.
    await ok(fs, 'mkdir "$M/again" && cd "$M/again" && touch x');
    assert(fs.rpcCalls.some((c) => c.method === "forget"), "no forget was sent");
    deepStrictEqual(await ok(fs, 'ls "$B/again"'), "x\n");
  } finally {
    await fs.close();
  }
});
