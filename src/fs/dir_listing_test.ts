import { deepStrictEqual } from "node:assert/strict";
import type { Entry } from "../fuse/mod.ts";
import { DT_DIR, DT_LNK, DT_REG, S_IFDIR, S_IFLNK, S_IFREG } from "../linux/mod.ts";
import type { DirEntry as WireDirEntry } from "../protocol/mod.ts";
import { ATTR_CACHE_LIMITS } from "./attr_cache.ts";
import { DirListing } from "./dir_listing.ts";
import { fakeStat } from "./_fake_rpc.ts";

function e(name: string | Uint8Array, offset: number, type = DT_REG): WireDirEntry {
  return { name, ino: BigInt(offset), type, offset: BigInt(offset * 100) };
}

function fill(
  listing: DirListing,
  offset: number,
  entries: WireDirEntry[],
  eof: boolean,
): { ok: boolean; dropped: string[] } {
  const dropped: string[] = [];
  const ok = listing.fill(offset, entries, eof, () => undefined, (d, reason) => {
    dropped.push(`${typeof d.name === "string" ? d.name.slice(0, 8) : "bytes"}: ${reason}`);
  });
  return { ok, dropped };
}

Deno.test("dir listing: positions are dense and map to the satellite's cookies", () => {
  const l = new DirListing();
  fill(l, 0, [e("a", 1), e("l", 2, DT_LNK), e("d", 3, DT_DIR)], false);
  deepStrictEqual(l.buffer.map((d) => [d.name, d.next, d.mode]), [
    ["a", 1, S_IFREG],
    ["l", 2, S_IFLNK],
    ["d", 3, S_IFDIR],
  ]);
  deepStrictEqual(l.cookies, [0n, 100n, 200n, 300n]);
  deepStrictEqual(l.end, undefined);
  fill(l, 3, [e("z", 4)], true);
  deepStrictEqual([l.bufferStart, l.end, l.buffer[0].next], [3, 4, 4]);
});

Deno.test("dir listing: bad names and duplicates are dropped, dots only as directories", () => {
  const l = new DirListing();
  const { dropped } = fill(l, 0, [
    e(".", 1, DT_DIR),
    e("..", 2, 0),
    e("a", 3),
    e("a", 4),
    e("..", 5, DT_REG),
    e("b/c", 6),
    e("", 7),
    e(new Uint8Array([0xff]), 8),
    e("b", 9),
  ], true);
  deepStrictEqual(l.buffer.map((d) => d.name), [".", "..", "a", "b"]);
  deepStrictEqual(l.buffer.map((d) => d.next), [1, 2, 3, 4]);
  deepStrictEqual(l.cookies, [0n, 100n, 200n, 300n, 900n]);
  deepStrictEqual(dropped.length, 5, dropped.join("; "));
});

Deno.test("dir listing: reading a position again shows its names again", () => {
  const l = new DirListing();
  fill(l, 0, [e("a", 1), e("b", 2)], false);
  fill(l, 2, [e("c", 3)], true);
  fill(l, 0, [e("a", 1), e("b", 2)], false); // rewinddir
  deepStrictEqual(l.buffer.map((d) => d.name), ["a", "b"]);
  fill(l, 1, [e("b", 2), e("a", 9)], false); // "a" is at position 0, not 2
  deepStrictEqual(l.buffer.map((d) => d.name), ["b"]);
});

Deno.test("dir listing: a batch with nothing to show asks for more unless at the end", () => {
  const l = new DirListing();
  deepStrictEqual(fill(l, 0, [e("a/b", 1)], false).ok, false);
  deepStrictEqual(l.buffer, []);
  deepStrictEqual(fill(l, 0, [e("a/b", 1)], true).ok, true);
  deepStrictEqual(l.end, 0);
});

Deno.test("dir listing: entries are described except the dots", () => {
  const l = new DirListing();
  const entry: Entry = {
    attr: {
      ino: 1n,
      mode: S_IFREG,
      nlink: 1,
      uid: 0,
      gid: 0,
      rdev: 0,
      size: 0,
      blocks: 0,
      atime: { sec: 0, nsec: 0 },
      mtime: { sec: 0, nsec: 0 },
      ctime: { sec: 0, nsec: 0 },
    },
  };
  const described: string[] = [];
  l.fill(0, [e(".", 1, DT_DIR), { ...e("f", 2), stat: fakeStat() }], true, (s) => {
    described.push(s.name);
    return entry;
  }, () => {});
  deepStrictEqual(described, ["f"]);
  deepStrictEqual(l.buffer.map((d) => d.entry), [undefined, entry]);
});

Deno.test("dir listing: shown names give their attributes, those of a huge listing's start only", () => {
  const l = new DirListing();
  const max = ATTR_CACHE_LIMITS.listed;
  const stat = fakeStat();
  const batch = (from: number, to: number): WireDirEntry[] =>
    Array.from({ length: to - from }, (_, i) => ({ ...e(`f${from + i}`, from + i + 1), stat }));
  fill(l, 0, [e("bare", 1), ...batch(1, 1000)], false);
  deepStrictEqual([l.statOf("f1"), l.statOf("bare"), l.statOf("missing")], [
    stat,
    undefined,
    undefined,
  ]);
  let end = 1000;
  for (; end < max + 1000; end += 4096) fill(l, end, batch(end, end + 4096), false);
  deepStrictEqual(l.size, end);
  deepStrictEqual(l.statOf(`f${max - 1}`), stat, "the last one kept");
  deepStrictEqual(l.statOf(`f${max}`), undefined, "beyond: names only");
});
