// Listings as records: what the satellite writes is what the client parses, field by field;
// malformed listings are refused, never thrown on. Seeded; the seed is printed on failure.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import {
  createPackr,
  createUnpackr,
  type DirEntry,
  type EntryList,
  type EntryName,
  INVALID,
  METHODS,
  RECORD_BYTES,
  RecordWriter,
  type Stat,
  statOfRecord,
  statOfStatx,
  statxIno,
  statxMode,
  statxSize,
  type WalkEntry,
  writeStat,
} from "./mod.ts";
import { entryList } from "./records.ts";
import { mutate, rng, SEED, withSeed } from "./_test_utils.ts";

/** A listing built from entry objects, as the satellite would send it. */
function entryListOf(entries: readonly WalkEntry[]): EntryList {
  const w = new RecordWriter();
  const names: EntryName[] = [];
  const targets: (EntryName | null)[] = [];
  for (const e of entries) w.add(e.ino, e.type, e.offset);
  const records = w.bytes().slice();
  const view = new DataView(records.buffer);
  entries.forEach((e, i) => {
    if (e.stat !== undefined) writeStat(view, i * RECORD_BYTES, e.stat);
    names.push(e.name);
    targets.push(e.target ?? null);
  });
  const list: EntryList = { names, records };
  if (targets.some((t) => t !== null)) list.targets = targets;
  return list;
}

const STAT: Stat = {
  ino: (1n << 63n) + 5n,
  mode: 0o100644,
  nlink: 3,
  uid: 4294967295,
  gid: 1000,
  rdevMajor: 0,
  rdevMinor: 0,
  devMajor: 259,
  devMinor: 1 << 20,
  size: (1n << 40n) + 1n,
  blocks: 17n,
  blksize: 4096,
  atimeSec: -1,
  atimeNsec: 999_999_999,
  mtimeSec: 1_700_000_000,
  mtimeNsec: 1,
  ctimeSec: 2 ** 40,
  ctimeNsec: 0,
  hasXattrs: true,
};

const ENTRIES: WalkEntry[] = [
  { name: ".", ino: 2n, type: 4, offset: 1n },
  { name: "file", ino: STAT.ino, type: 8, offset: 1n << 62n, stat: STAT },
  {
    name: "link",
    ino: STAT.ino, // an entry with attributes has statx's inode number
    type: 10,
    offset: 3n,
    stat: { ...STAT, mode: 0o120777, hasXattrs: undefined },
    target: "../elsewhere",
  },
  { name: new Uint8Array([0xff, 0x41]), ino: 10n, type: 8, offset: 4n },
];

/** Comparable form: bytes as plain arrays (msgpack gives Buffers), absent keys for undefined. */
function normal(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(normal);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(
      Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, normal(v)]),
    );
  }
  return value;
}

function wire(value: unknown): unknown {
  return createUnpackr().unpack(createPackr().pack(value));
}

Deno.test("records: a listing parses back to the entries it was written from", () => {
  const parsed = entryList(10, true).parse(wire(entryListOf(ENTRIES)));
  ok(parsed !== INVALID);
  deepStrictEqual(normal(parsed), normal(ENTRIES));
  equal(parsed[3].name instanceof Uint8Array, true, "a name that is not UTF-8 stays bytes");
  equal(parsed[2].stat!.hasXattrs, undefined, "unknown xattrs stay unknown");
  equal(parsed[1].stat!.hasXattrs, true);
});

Deno.test("records: the writer copies statx's buffer as the kernel lays it out", () => {
  const statx = new Uint8Array(256);
  const v = new DataView(statx.buffer);
  v.setUint32(4, 512, true); // stx_blksize
  v.setUint32(16, 2, true); // stx_nlink
  v.setUint32(20, 33, true); // stx_uid
  v.setUint32(24, 44, true); // stx_gid
  v.setUint16(28, 0o40755, true); // stx_mode
  v.setBigUint64(32, 77n, true); // stx_ino
  v.setBigUint64(40, 4096n, true); // stx_size
  v.setBigUint64(48, 8n, true); // stx_blocks
  v.setBigInt64(64, 10n, true); // stx_atime
  v.setUint32(72, 11, true);
  v.setBigInt64(96, 20n, true); // stx_ctime
  v.setUint32(104, 21, true);
  v.setBigInt64(112, 30n, true); // stx_mtime
  v.setUint32(120, 31, true);
  v.setUint32(128, 1, true); // stx_rdev_major
  v.setUint32(132, 2, true);
  v.setUint32(136, 8, true); // stx_dev_major
  v.setUint32(140, 3, true);
  statx.fill(0xee, 144); // what follows in statx is not the record's
  const w = new RecordWriter();
  for (let i = 0; i < 100; i++) w.add(BigInt(i), 4, BigInt(i + 1), statx, i % 2 === 0);
  w.add(1000n, 8, 1001n);
  equal(w.count, 101);
  equal(w.bytes().length, 101 * RECORD_BYTES);
  ok(w.hasStat(0) && !w.hasStat(100));
  ok(w.onDevice(5, 8, 3) && !w.onDevice(5, 8, 4));
  equal(w.type(100), 8);
  const names = Array.from({ length: 101 }, (_, i) => `n${i}`);
  const parsed = entryList(200).parse(wire({ names, records: w.bytes() })) as DirEntry[];
  ok(Array.isArray(parsed));
  deepStrictEqual(parsed[7], {
    name: "n7",
    ino: 77n,
    type: 4,
    offset: 8n,
    stat: {
      ino: 77n,
      mode: 0o40755,
      nlink: 2,
      uid: 33,
      gid: 44,
      rdevMajor: 1,
      rdevMinor: 2,
      devMajor: 8,
      devMinor: 3,
      size: 4096n,
      blocks: 8n,
      blksize: 512,
      atimeSec: 10,
      atimeNsec: 11,
      mtimeSec: 30,
      mtimeNsec: 31,
      ctimeSec: 20,
      ctimeNsec: 21,
      hasXattrs: false,
    },
  });
  deepStrictEqual(parsed[100], { name: "n100", ino: 1000n, type: 8, offset: 1001n });
  // writeStat rewrites attributes and keeps the entry's own fields
  const rewritten = w.bytes().slice();
  writeStat(new DataView(rewritten.buffer), 3 * RECORD_BYTES, { ...STAT, mode: 0o40700 });
  const again = entryList(200).parse({ names, records: rewritten }) as DirEntry[];
  equal(again[3].offset, 4n);
  equal(again[3].type, 4);
  equal(again[3].stat!.mode, 0o40700);
});

Deno.test("records: an entry appended from getdents64's bytes is the one `add` writes", () => {
  const statx = new Uint8Array(256).map((_, i) => (i * 13) & 0xff);
  // Two struct linux_dirent64 back to back: d_ino, d_off (both above 2^32), d_reclen, d_type.
  const dirents = new DataView(new ArrayBuffer(64));
  for (
    const [at, ino, off, type] of [[0, 0x1_0000_0007n, 0x8000_0000_0000_0001n, 8], [
      32,
      5n,
      0xffff_ffff_ffff_ffffn,
      10,
    ]] as const
  ) {
    dirents.setBigUint64(at, ino, true);
    dirents.setBigUint64(at + 8, off, true);
    dirents.setUint16(at + 16, 32, true);
    dirents.setUint8(at + 18, type);
  }
  const fromDirents = new RecordWriter();
  fromDirents.addDirent(dirents, 0, statx, true);
  fromDirents.addDirent(dirents, 32);
  const fromValues = new RecordWriter();
  fromValues.add(0x1_0000_0007n, 8, 0x8000_0000_0000_0001n, statx, true);
  fromValues.add(5n, 10, 0xffff_ffff_ffff_ffffn);
  deepStrictEqual(fromDirents.bytes(), fromValues.bytes());
});

Deno.test("records: malformed listings are refused", () => {
  const good = entryListOf(ENTRIES);
  const schema = entryList(10, true);
  const bad: unknown[] = [
    null,
    [],
    { names: good.names },
    { names: good.names, records: good.records.subarray(1) },
    { names: good.names.slice(1), records: good.records },
    { names: [...good.names, "x"], records: good.records },
    { names: good.names, records: Array.from(good.records) },
    { names: [1, 2, 3, 4], records: good.records },
    { ...good, targets: [null] },
    { ...good, targets: [null, null, 5, null] },
    { names: Array(11).fill("a"), records: new Uint8Array(11 * RECORD_BYTES) },
  ];
  for (const b of bad) equal(schema.parse(b), INVALID, Deno.inspect(b));
  // a time beyond 2^53 seconds
  const far = good.records.slice();
  new DataView(far.buffer).setBigInt64(RECORD_BYTES + 112, 1n << 60n, true);
  equal(schema.parse({ names: good.names, records: far }), INVALID);
  // …which a sender reading its own statx buffer clamps instead
  const view = new DataView(far.buffer, RECORD_BYTES);
  equal(statOfStatx(view, 0).mtimeSec, Number.MAX_SAFE_INTEGER);
  equal(statOfRecord(view, 0), INVALID);
  equal(statxMode(view), 0o100644);
  equal(statxIno(view), STAT.ino);
  equal(statxSize(view), STAT.size);
});

Deno.test("records: times are exact up to ±(2^53 - 1) seconds and refused beyond", () => {
  const bytes = new Uint8Array(RECORD_BYTES);
  const view = new DataView(bytes.buffer);
  writeStat(view, 0, STAT);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  const cases: [bigint, number | undefined][] = [
    [0n, 0],
    [-1n, -1],
    [1_700_000_000n, 1_700_000_000],
    [-1_700_000_000n, -1_700_000_000],
    [(1n << 32n) - 1n, 2 ** 32 - 1],
    [1n << 32n, 2 ** 32],
    [-(1n << 32n), -(2 ** 32)],
    [max, Number.MAX_SAFE_INTEGER],
    [-max, -Number.MAX_SAFE_INTEGER],
    [max + 1n, undefined],
    [-max - 1n, undefined],
    [1n << 62n, undefined],
    [-(1n << 63n), undefined],
  ];
  for (const [sec, want] of cases) {
    view.setBigInt64(112, sec, true);
    const stat = statOfRecord(view, 0);
    if (want === undefined) {
      equal(stat, INVALID, `${sec}`);
      const clamped = sec < 0n ? -Number.MAX_SAFE_INTEGER : Number.MAX_SAFE_INTEGER;
      equal(statOfStatx(view, 0).mtimeSec, clamped, `${sec} clamped`);
    } else {
      equal((stat as Stat).mtimeSec, want, `${sec}`);
      equal(statOfStatx(view, 0).mtimeSec, want, `${sec} from statx`);
    }
  }
});

withSeed("records: mutated listings parse or are refused, never throw", () => {
  const rand = rng(SEED + 7);
  const frame = createPackr().pack([1, 1, { entries: entryListOf(ENTRIES), eof: true }]);
  for (let i = 0; i < 3000; i++) {
    const bytes = mutate(rand, frame);
    let value: unknown;
    try {
      value = createUnpackr().unpack(bytes);
    } catch {
      continue; // not msgpack any more: the frame decoder's case
    }
    const body = Array.isArray(value) ? value[2] : undefined;
    const parsed = METHODS.readdir.result.parse(body);
    if (parsed === INVALID) continue;
    for (const e of parsed.entries) {
      ok(typeof e.ino === "bigint" && typeof e.offset === "bigint");
      if (e.stat) ok(Number.isSafeInteger(e.stat.mtimeSec));
    }
  }
});

Deno.test("records: a single Stat travels as a record, inside results too", () => {
  const lstat = METHODS.lstat.result;
  deepStrictEqual(lstat.parse(wire(lstat.encode!(STAT))), STAT);
  const noXattrs = { ...STAT, hasXattrs: undefined };
  deepStrictEqual(normal(lstat.parse(wire(lstat.encode!(noXattrs)))), normal(noXattrs));
  // create's result: the Stat fields inside an object, one of them optional
  const create = METHODS.create.result;
  const sent = create.encode!({ handle: 3, stat: STAT });
  ok((sent as { stat: unknown }).stat instanceof Uint8Array);
  deepStrictEqual(create.parse(wire(sent)), { handle: 3, stat: STAT });
  // a walk's directories carry their own Stat as a record
  const walked = METHODS.walk.result;
  const dirs = [{ path: "a", self: STAT, entries: entryListOf(ENTRIES) }];
  const parsed = walked.parse(wire(walked.encode!({ dirs, walked: 1 })));
  ok(parsed !== INVALID);
  deepStrictEqual(parsed.dirs[0].self, STAT);
  equal(parsed.dirs[0].entries.length, ENTRIES.length);
  // refused: protocol 1's map, a record without attributes, a short or long one
  const record = lstat.encode!(STAT) as Uint8Array;
  const bare = record.slice();
  bare[153] = 0;
  for (const bad of [{ ...STAT }, bare, record.subarray(1), new Uint8Array(RECORD_BYTES + 1)]) {
    equal(lstat.parse(bad), INVALID);
  }
});
