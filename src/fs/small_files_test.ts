import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type { Attr } from "../fuse/mod.ts";
import { fakeStat } from "../protocol/_test_utils.ts";
import type { WholeFile } from "../protocol/mod.ts";
import { SmallFiles } from "./small_files.ts";

function file(size: number, mtimeSec = 5): WholeFile {
  return { stat: fakeStat({ size: BigInt(size), mtimeSec }), data: new Uint8Array(size).fill(7) };
}

function attrOf(f: WholeFile): Attr {
  return {
    ino: f.stat.ino,
    mode: f.stat.mode,
    nlink: 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    size: Number(f.stat.size),
    blocks: 0,
    atime: { sec: 0, nsec: 0 },
    mtime: { sec: f.stat.mtimeSec, nsec: f.stat.mtimeNsec },
    ctime: { sec: 0, nsec: 0 },
  };
}

const OTHER = file(1);

function setup(
  watched = false,
  maxBytes?: number,
): {
  small: SmallFiles;
  advance: (ms: number) => void;
  offer: (...f: [string, WholeFile][]) => void;
} {
  let now = 1000;
  const small = new SmallFiles({ ttlMs: 1000, watched: () => watched, now: () => now, maxBytes });
  small.open("d", "first", "k0", attrOf(OTHER)); // the directory is followed from its first open
  return {
    small,
    advance: (ms) => void (now += ms),
    offer: (...files) =>
      small.offer("d", files.map(([n]) => n), files.map(([, f]) => f), () => "k", now),
  };
}

Deno.test("small files: an entry serves one open of the same inode, size and mtime", () => {
  const { small, offer } = setup();
  const a = file(3);
  small.offer("d", ["a", "b"], [a, undefined], () => "k", 1000);
  equal(small.open("d", "b", "k", attrOf(a)).data, undefined, "nothing was read for b");
  equal(small.open("d", "a", "other", attrOf(a)).data, undefined, "another inode");
  offer(["a", a]);
  equal(small.open("d", "a", "k", { ...attrOf(a), size: 4 }).data, undefined, "another size");
  offer(["a", a]);
  const later = { ...attrOf(a), mtime: { sec: 5, nsec: 1 } };
  equal(small.open("d", "a", "k", later).data, undefined, "another mtime");
  offer(["a", a]);
  deepStrictEqual(small.open("d", "a", "k", attrOf(a)).data, a.data);
  equal(small.open("d", "a", "k", attrOf(a)).data, undefined, "used once");
  equal(small.bytes, 0);
});

Deno.test("small files: entries serve within the timeout, or while the directory is watched", () => {
  for (const watched of [false, true]) {
    const { small, advance, offer } = setup(watched);
    const a = file(3);
    offer(["a", a]);
    advance(1500);
    equal(small.open("d", "a", "k", attrOf(a)).data !== undefined, watched);
  }
});

Deno.test("small files: the second open in a row that finds nothing asks for a fetch, one at a time", () => {
  const { small, advance } = setup();
  equal(small.open("d", "b", "k", attrOf(OTHER)).fetch, "missed", "'first', then 'b'");
  equal(small.open("d", "c", "k", attrOf(OTHER)).fetch, undefined, "counting starts again");
  advance(2000);
  equal(small.open("d", "e", "k", attrOf(OTHER)).fetch, undefined, "more than a second apart");
  ok(!small.wanted("d", "e") && small.wanted("d", "z"), "names opened are not asked for");
  let done!: () => void;
  small.fetching("d", ["x"], new Promise<void>((resolve) => done = resolve));
  ok(small.pending("d", "x") !== undefined);
  equal(small.pending("d", "y"), undefined, "not asked for");
  equal(small.open("d", "f", "k", attrOf(OTHER)).fetch, undefined, "a fetch is under way");
  done();
});

Deno.test("small files: the next batch is asked for when this one runs low", () => {
  const { small, offer } = setup();
  const files = Array.from({ length: 6 }, () => file(2));
  offer(...files.map((f, i) => [`n${i}`, f] as [string, WholeFile]));
  ok(!small.wanted("d", "n0"), "held");
  const fetches = files.map((f, i) => {
    const { fetch } = small.open("d", `n${i}`, "k", attrOf(f));
    if (fetch) small.fetching("d", ["more"], new Promise<void>(() => {}));
    return fetch;
  });
  deepStrictEqual(fetches, [undefined, "running low", undefined, undefined, undefined, undefined]);
});

Deno.test("small files: the oldest go beyond the byte budget; clear forgets all", () => {
  const { small, offer } = setup(false, 10);
  const [a, b, c] = [file(4), file(4), file(4)];
  offer(["a", a], ["b", b], ["c", c]);
  equal(small.bytes, 8);
  equal(small.open("d", "a", "k", attrOf(a)).data, undefined, "evicted");
  ok(small.open("d", "b", "k", attrOf(b)).data !== undefined);
  small.clear();
  equal(small.bytes, 0);
  offer(["a", a]);
  equal(small.bytes, 0, "a fetch asked before the clear is not kept");
});

Deno.test("small files: an event in a directory drops its entries and the inode's elsewhere", () => {
  const { small, offer } = setup();
  const [a, b] = [file(2), file(2)];
  offer(["a", a]);
  small.open("e", "first", "k0", attrOf(OTHER));
  small.offer("e", ["b", "c"], [b, b], (f) => f === b ? "kb" : "k", 1000);
  small.dropDir("d", "kb");
  equal(small.bytes, 0, "d's entry, and both names of inode kb in e");
  small.offer("e", ["c"], [b], () => "kc", 1000);
  small.dropDir("d");
  equal(small.bytes, 2, "another directory's stay");
});

Deno.test("small files: after a fetch that brought nothing, no more are asked in that directory", () => {
  const { small } = setup();
  equal(small.open("d", "b", "k", attrOf(OTHER)).fetch, "missed");
  small.offer("d", ["c", "d"], [undefined, undefined], () => "k", 1000);
  equal(small.open("d", "c", "k", attrOf(OTHER)).fetch, undefined);
  equal(small.open("d", "d", "k", attrOf(OTHER)).fetch, undefined, "two misses in a row: none");
});

Deno.test("small files: while read ahead serves, the first open that misses in another directory fetches", () => {
  const { small, offer, advance } = setup();
  const a = file(2);
  offer(["a", a]);
  ok(small.open("d", "a", "k", attrOf(a)).data !== undefined, "served");
  equal(small.open("e", "x", "k", attrOf(OTHER)).fetch, "missed", "one miss is enough");
  advance(1500);
  equal(small.open("f", "x", "k", attrOf(OTHER)).fetch, undefined, "not lately: two are needed");
});
