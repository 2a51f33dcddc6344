// Cached opens without a kernel: the reader-side filter (evaluated from its shipped source, as
// the reader worker does) and the session that marks, adopts and ends.

import { deepStrictEqual, ok } from "node:assert/strict";
import { MemFs } from "../../tests/fuse/memfs.ts";
import { body, evaluated, FakeDevice, frame, initialized, runFilter } from "./_test_utils.ts";
import { FOPEN_KEEP_CACHE, FOPEN_NOFLUSH, Opcode, OUT_HEADER_SIZE } from "./abi.ts";
import { CACHED_FH_BIT, CachedOpens } from "./cached_opens.ts";

const O_RDONLY_LARGEFILE = 0o100000;
const O_DIRECTORY = 0o200000;

const open = (nodeId: bigint, flags = O_RDONLY_LARGEFILE, unique = 7n, dir = false) =>
  frame({
    opcode: dir ? Opcode.OPENDIR : Opcode.OPEN,
    unique,
    nodeId,
    body: body([flags, "u32"], [0, "u32"]),
  });
const release = (nodeId: bigint, fh: bigint, unique = 9n, dir = false) =>
  frame({
    opcode: dir ? Opcode.RELEASEDIR : Opcode.RELEASE,
    unique,
    nodeId,
    body: body([Number(fh >> 32n), "u32"], [0, "u32"], [0, "u32"], [0, "u32"]),
  });
/** RELEASE's body starts with the u64 fh (body() writes u64 as one field). */
const releaseFh = (nodeId: bigint, fh: bigint, unique = 9n, dir = false): Uint8Array => {
  const f = release(nodeId, 0n, unique, dir);
  new DataView(f.buffer).setBigUint64(40, fh, true);
  return f;
};

Deno.test("cached opens filter: repeats a marked answer to the same open only", () => {
  const table = new CachedOpens();
  const filter = evaluated(table.filter);
  const fopen = FOPEN_KEEP_CACHE | FOPEN_NOFLUSH;
  deepStrictEqual(runFilter(filter, open(5n))[0], 0, "unmarked");
  table.mark(5n, false, O_RDONLY_LARGEFILE, fopen, 60);
  const [n, reply] = runFilter(filter, open(5n, O_RDONLY_LARGEFILE, 1234n));
  deepStrictEqual(n, OUT_HEADER_SIZE + 16);
  const fh = reply.getBigUint64(16, true);
  deepStrictEqual(
    [reply.getUint32(0, true), reply.getInt32(4, true), reply.getBigUint64(8, true)],
    [OUT_HEADER_SIZE + 16, 0, 1234n],
  );
  ok(CachedOpens.made(fh) && fh >= CACHED_FH_BIT, `a number of the reader's own: ${fh}`);
  deepStrictEqual(reply.getUint32(24, true), fopen, "the FOPEN flags marked");
  const [, again] = runFilter(filter, open(5n));
  ok(again.getBigUint64(16, true) !== fh, "each open its own number");
  deepStrictEqual(runFilter(filter, open(5n, O_RDONLY_LARGEFILE | 0o4000))[0], 0, "other flags");
  deepStrictEqual(
    runFilter(filter, open(5n, O_RDONLY_LARGEFILE, 7n, true))[0],
    0,
    "as a directory",
  );
  deepStrictEqual(runFilter(filter, open(6n))[0], 0, "another node");
  deepStrictEqual(runFilter(filter, open(5n + (1n << 14n)))[0], 0, "same slot, other node");
  const f = open(5n);
  deepStrictEqual(runFilter(filter, f, 47)[0], 0, "shorter than header + open_in");
  deepStrictEqual(runFilter(filter, f, f.length - 1)[0], 0, "length disagrees with the header");
  table.end(5n);
  deepStrictEqual(runFilter(filter, open(5n))[0], 0, "ended");
  table.mark(7n, true, O_DIRECTORY, 0, 60);
  deepStrictEqual(
    runFilter(filter, open(7n, O_DIRECTORY, 8n, true))[0],
    OUT_HEADER_SIZE + 16,
    "dir",
  );
});

Deno.test("cached opens filter: copies on several threads never make the same number", () => {
  // One copy per io_uring ring: the session keeps the handle it adopts for a number, so one
  // number made for two directories would list one in place of the other.
  const table = new CachedOpens();
  const rings = [evaluated(table.filter), evaluated(table.filter)];
  table.mark(5n, true, O_DIRECTORY, 0, 60);
  table.mark(6n, true, O_DIRECTORY, 0, 60);
  const made = new Set<bigint>();
  for (let i = 0; i < 4; i++) {
    for (const [ring, node] of [[rings[0], 5n], [rings[1], 6n]] as const) {
      const [n, reply] = runFilter(ring, open(node, O_DIRECTORY, 8n, true));
      deepStrictEqual(n, OUT_HEADER_SIZE + 16, `ring answers node ${node}`);
      const fh = reply.getBigUint64(16, true);
      ok(CachedOpens.made(fh), `a number of the reader's own: ${fh}`);
      ok(!made.has(fh), `${fh} made once`);
      made.add(fh);
    }
  }
});

Deno.test("cached opens filter: releases its own numbers until the session adopts one", () => {
  const table = new CachedOpens();
  const filter = evaluated(table.filter);
  const made = CACHED_FH_BIT | 77n;
  deepStrictEqual(
    runFilter(filter, releaseFh(5n, made))[0],
    OUT_HEADER_SIZE,
    "unadopted: answered",
  );
  deepStrictEqual(
    runFilter(filter, releaseFh(5n, made, 9n, true))[0],
    OUT_HEADER_SIZE,
    "RELEASEDIR",
  );
  deepStrictEqual(runFilter(filter, releaseFh(5n, 3n))[0], 0, "the session's own numbers pass");
  table.adopt(made);
  deepStrictEqual(runFilter(filter, releaseFh(5n, made))[0], 0, "adopted: the session releases it");
  table.released(made);
  deepStrictEqual(runFilter(filter, releaseFh(5n, made))[0], OUT_HEADER_SIZE);
});

/** Makes file `f` (node 2) holding `text` through the session. */
function makeFile(device: FakeDevice, text: string): void {
  device.send(frame({
    opcode: Opcode.CREATE,
    unique: 2n,
    body: body([0o102, "u32"], [0o644, "u32"], [0, "u32"], [0, "u32"], "f"),
  }));
  const [created] = device.take();
  const fh = new DataView(created.bytes.buffer).getBigUint64(OUT_HEADER_SIZE + 128, true);
  const data = new TextEncoder().encode(text);
  device.send(frame({
    opcode: Opcode.WRITE,
    unique: 3n,
    nodeId: 2n,
    body: body(
      [Number(fh), "u64"],
      [0, "u64"],
      [data.length, "u32"],
      [0, "u32"],
      [0, "u64"],
      [0, "u32"],
      [0, "u32"],
      data,
    ),
  }));
  device.send(releaseFh(2n, fh, 4n));
  deepStrictEqual(device.take().map((r) => r.error), [0, 0]);
}

/** Sends OPEN of node 2 and gives the reply and its handle number. */
function openFile(device: FakeDevice, unique: bigint): { byFilter: boolean; fh: bigint } {
  device.send(open(2n, O_RDONLY_LARGEFILE, unique));
  const [r] = device.take();
  deepStrictEqual([r.unique, r.error], [unique, 0]);
  return { byFilter: r.byFilter, fh: new DataView(r.bytes.buffer).getBigUint64(16, true) };
}

const read = (fh: bigint, unique: bigint) =>
  frame({
    opcode: Opcode.READ,
    unique,
    nodeId: 2n,
    body: body(
      [Number(fh & 0xffffffffn), "u32"],
      [Number(fh >> 32n), "u32"],
      [0, "u64"],
      [
        100,
        "u32",
      ],
      [0, "u32"],
      [0, "u64"],
      [0, "u32"],
      [0, "u32"],
    ),
  });

Deno.test("cached opens: the session marks reusable opens, adopts on use, ends at changes", async () => {
  const fs = new MemFs({ rootMode: 0o777, reuseOpens: 60 });
  const { device, session } = await initialized(fs);
  makeFile(device, "hello");
  const first = openFile(device, 10n);
  deepStrictEqual([first.byFilter, fs.openCalls], [false, 1], "the first open asks");
  const second = openFile(device, 11n);
  ok(second.byFilter && CachedOpens.made(second.fh), "the second is answered by the reader");
  deepStrictEqual(fs.openCalls, 1);
  // A READ on the reader's number: the session gets a handle from the filesystem for it.
  device.send(read(second.fh, 12n));
  const [got] = device.take();
  deepStrictEqual(
    [got.byFilter, new TextDecoder().decode(got.bytes.subarray(OUT_HEADER_SIZE))],
    [false, "hello"],
  );
  deepStrictEqual(fs.cachedHandles, 1);
  // Its RELEASE goes to the session; an unused one's is answered by the reader.
  const third = openFile(device, 13n);
  device.send(releaseFh(2n, second.fh, 14n));
  device.send(releaseFh(2n, third.fh, 15n));
  deepStrictEqual(device.take().map((r) => [r.unique, r.byFilter]), [[14n, false], [15n, true]]);
  // A change of the node (a write through the mount) ends the mark: the next open asks.
  device.send(frame({
    opcode: Opcode.SETATTR,
    unique: 16n,
    nodeId: 2n,
    body: new Uint8Array(88),
  }));
  device.take();
  deepStrictEqual([openFile(device, 17n).byFilter, fs.openCalls], [false, 2]);
  deepStrictEqual(openFile(device, 18n).byFilter, true, "marked again");
  // An invalidation the filesystem asks for (a change inside the container) ends it too.
  await session.invalidateInode(session.nodes.get(2n)!);
  deepStrictEqual([openFile(device, 19n).byFilter, fs.openCalls], [false, 3]);
  device.end();
  await session.closed;
});

Deno.test("cached opens: off while tracing", async () => {
  const fs = new MemFs({ rootMode: 0o777, reuseOpens: 60 });
  const { device, session } = await initialized(fs, { debug: true });
  makeFile(device, "x");
  openFile(device, 10n);
  deepStrictEqual([openFile(device, 11n).byFilter, fs.openCalls], [false, 2]);
  device.end();
  await session.closed;
});
