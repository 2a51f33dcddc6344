import { deepStrictEqual, equal } from "node:assert/strict";
import { DT_DIR, DT_REG } from "../src/linux/mod.ts";
import { RecordWriter, type Stat, WALK_SLICE_MS } from "../src/protocol/mod.ts";
import type { Libc } from "./libc.ts";
import type { Listing } from "./listing.ts";
import { walk, type WalkAccess } from "./walk.ts";

const STAT: Stat = {
  ino: 1n,
  mode: 0o40755,
  nlink: 2,
  uid: 0,
  gid: 0,
  rdevMajor: 0,
  rdevMinor: 0,
  devMajor: 0,
  devMinor: 0,
  size: 0n,
  blocks: 0n,
  blksize: 4096,
  atimeSec: 0,
  atimeNsec: 0,
  mtimeSec: 0,
  mtimeNsec: 0,
  ctimeSec: 0,
  ctimeNsec: 0,
};

/**
 * A tree of directories by path ("" is the root) whose listing takes `listMs` of the clock each:
 * every directory holds a file and the subdirectories named.
 */
function fakeTree(tree: Record<string, string[]>, listMs: number) {
  let clock = 0;
  const paths: string[] = []; // fd - 3 → path
  const listed: string[] = [];
  const open = (path: string): number => {
    if (!(path in tree)) return -2;
    paths.push(path);
    return paths.length + 2;
  };
  const access: WalkAccess = {
    libc: { fn: { close: () => 0 } } as unknown as Libc,
    openPath: (p) => open(String(p)),
    openChild: (dirfd, name) => {
      const parent = paths[dirfd - 3];
      const child = new TextDecoder().decode(name.subarray(0, name.length - 1));
      return open(parent === "" ? child : `${parent}/${child}`);
    },
    statFd: () => STAT,
    list: (fd): Listing => {
      const path = paths[fd - 3];
      listed.push(path);
      clock += listMs;
      const records = new RecordWriter();
      const names = ["file", ...tree[path]];
      records.add(2n, DT_REG, 1n, new Uint8Array(144), false);
      tree[path].forEach((_, i) =>
        records.add(BigInt(10 + i), DT_DIR, BigInt(i + 2), new Uint8Array(144), false)
      );
      return { names, records };
    },
    beforeList: () => {},
    now: () => clock,
  };
  return { access, listed };
}

const TREE: Record<string, string[]> = {
  "a": ["b", "c"],
  "a/b": ["d"],
  "a/b/d": [],
  "a/c": [],
  "e": [],
};

Deno.test("a walk answers whole within its time slice", () => {
  const { access } = fakeTree(structuredClone(TREE), 0);
  const r = walk(access, {
    paths: ["a", "e"],
    maxEntries: 1000,
    maxBytes: 1 << 20,
    maxMs: WALK_SLICE_MS,
  });
  equal(r.walked, 2);
  deepStrictEqual(r.dirs.map((d) => d.path), ["a", "a/b", "a/b/d", "a/c", "e"]);
});

Deno.test("a walk ends at a directory boundary once its time slice is spent", () => {
  const ask = { paths: ["a", "e"], maxEntries: 1000, maxBytes: 1 << 20, maxMs: WALK_SLICE_MS };
  // Each listing takes 40% of the slice: the third directory begins at 80%, the fourth past it.
  const { access, listed } = fakeTree(structuredClone(TREE), WALK_SLICE_MS * 0.4);
  const r = walk(access, ask);
  deepStrictEqual(r.dirs.map((d) => d.path), ["a", "a/b", "a/b/d"]);
  equal(r.walked, 0); // "a" was not walked to its end: the client asks for the rest
  deepStrictEqual(listed, ["a", "a/b", "a/b/d"]); // nothing read that was not answered
  // No slice asked for (a client far away, where each answer costs a round trip): whole.
  const far = fakeTree(structuredClone(TREE), WALK_SLICE_MS * 0.4);
  const all = walk(far.access, { ...ask, maxMs: undefined });
  equal(all.walked, 2);
  equal(all.dirs.length, 5);
  // However slow, the first directory is always answered (else a walk could never pass it).
  const slow = fakeTree(structuredClone(TREE), WALK_SLICE_MS * 10);
  const one = walk(slow.access, { ...ask, paths: ["e", "a"] });
  deepStrictEqual(one.dirs.map((d) => d.path), ["e"]);
  equal(one.walked, 1);
});
