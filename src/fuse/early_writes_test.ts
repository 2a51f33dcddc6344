// Writes answered ahead without a kernel: the reader-side filter (evaluated from its shipped
// source, as the reader worker does) and the session that grants, refunds and ends credits.

import { deepStrictEqual, ok } from "node:assert/strict";
import { MemFs } from "../../tests/fuse/memfs.ts";
import { body, evaluated, type FakeDevice, frame, initialized, runFilter } from "./_test_utils.ts";
import {
  ATTR_SIZE,
  FlushInOffset,
  FUSE_WRITE_KILL_SUIDGID,
  IN_HEADER_SIZE,
  Opcode,
  OUT_HEADER_SIZE,
  WRITE_OUT_SIZE,
  WriteInOffset,
} from "./abi.ts";
import { CachedAttrs } from "./cached_attrs.ts";
import { CachedOpens } from "./cached_opens.ts";
import { EarlyWrites } from "./early_writes.ts";
import { ERRNO } from "../linux/mod.ts";
import type { RequestContext } from "./filesystem.ts";

const REPLY = OUT_HEADER_SIZE + WRITE_OUT_SIZE;

const write = (fh: bigint, size: number, opts: { unique?: bigint; writeFlags?: number } = {}) =>
  frame({
    opcode: Opcode.WRITE,
    unique: opts.unique ?? 7n,
    nodeId: 2n,
    body: body(
      [Number(fh), "u64"],
      [0, "u64"],
      [size, "u32"],
      [opts.writeFlags ?? 0, "u32"],
      [0, "u64"],
      [0o1, "u32"],
      [0, "u32"],
      new Uint8Array(size).fill(0x61),
    ),
  });

Deno.test("early writes filter: answers writes within the credit of a granted handle only", () => {
  const table = new EarlyWrites();
  const filter = evaluated(table.filter);
  deepStrictEqual(runFilter(filter, write(3n, 100))[0], 0, "no row");
  ok(table.grant(3n, 250));
  const [n, reply] = runFilter(filter, write(3n, 100, { unique: 1234n }));
  deepStrictEqual(n, REPLY);
  deepStrictEqual(
    [
      reply.getUint32(0, true),
      reply.getInt32(4, true),
      reply.getBigUint64(8, true),
      reply.getUint32(OUT_HEADER_SIZE, true),
    ],
    [REPLY, 0, 1234n, 100],
  );
  deepStrictEqual(table.credit(3n), 150);
  deepStrictEqual(runFilter(filter, write(3n, 100))[0], REPLY);
  deepStrictEqual(runFilter(filter, write(3n, 100))[0], 0, "past the credit");
  deepStrictEqual(table.credit(3n), 50, "a write passed on takes nothing");
  table.refund(3n, 200);
  deepStrictEqual(table.credit(3n), 250);
  deepStrictEqual(
    runFilter(filter, write(3n, 10, { writeFlags: FUSE_WRITE_KILL_SUIDGID }))[0],
    0,
    "set-user-ID bits to clear: the filesystem decides",
  );
  deepStrictEqual(runFilter(filter, write(4n, 10))[0], 0, "another handle");
  const w = write(3n, 10);
  deepStrictEqual(runFilter(filter, w, w.length - 1)[0], 0, "length disagrees with the header");
  const short = write(3n, 10);
  new DataView(short.buffer).setUint32(IN_HEADER_SIZE + WriteInOffset.SIZE, 11, true);
  deepStrictEqual(runFilter(filter, short)[0], 0, "claims more data than it carries");
  const far = write(3n, 10);
  new DataView(far.buffer).setBigUint64(IN_HEADER_SIZE + WriteInOffset.OFFSET, 1n << 53n, true);
  deepStrictEqual(runFilter(filter, far)[0], 0, "an offset the session refuses (EFBIG)");
  new DataView(far.buffer).setBigUint64(
    IN_HEADER_SIZE + WriteInOffset.OFFSET,
    (1n << 53n) - 1n,
    true,
  );
  deepStrictEqual(runFilter(filter, far)[0], REPLY, "the largest offset it takes");
  table.refund(3n, 10);
  deepStrictEqual(runFilter(filter, frame({ opcode: Opcode.GETATTR, nodeId: 2n }))[0], 0);
  table.end(3n);
  deepStrictEqual(runFilter(filter, write(3n, 10))[0], 0, "ended");
  table.refund(3n, 100);
  deepStrictEqual(table.credit(3n), 0, "a refund after the end gives nothing");
});

Deno.test("early writes filter: a row is the handle's alone until it ends", () => {
  const table = new EarlyWrites();
  const filter = evaluated(table.filter);
  ok(table.grant(5n, 100));
  ok(!table.grant(5n + 4096n, 100), "same row, another handle: no early writes for it");
  deepStrictEqual(runFilter(filter, write(5n + 4096n, 10))[0], 0);
  table.end(5n);
  ok(table.grant(5n + 4096n, 100), "free again");
  deepStrictEqual(runFilter(filter, write(5n + 4096n, 10))[0], REPLY);
  deepStrictEqual(runFilter(filter, write(5n, 10))[0], 0);
});

Deno.test("early writes: the caches answer nothing for a node until the session saw its write", () => {
  const table = new EarlyWrites();
  const attrs = new CachedAttrs(table.held);
  const opens = new CachedOpens(table.held);
  const early = evaluated(table.filter);
  const attrFilter = evaluated(attrs.filter);
  const openFilter = evaluated(opens.filter);
  const getattr = (nodeId: bigint) =>
    frame({ opcode: Opcode.GETATTR, nodeId, body: body([0, "u32"], [0, "u32"], [0, "u64"]) });
  const open = (nodeId: bigint) =>
    frame({ opcode: Opcode.OPEN, nodeId, body: body([0o100000, "u32"], [0, "u32"]) });
  for (const node of [2n, 3n]) {
    attrs.record(node, new Uint8Array(ATTR_SIZE), 60);
    opens.mark(node, false, 0o100000, 0, 60);
  }
  ok(table.grant(3n, 100));
  deepStrictEqual(runFilter(early, write(3n, 10))[0], REPLY, "a write of node 2, answered ahead");
  deepStrictEqual(runFilter(attrFilter, getattr(2n))[0], 0, "its attributes wait for the session");
  deepStrictEqual(runFilter(openFilter, open(2n))[0], 0, "its opens too");
  ok(runFilter(attrFilter, getattr(3n))[0] > 0, "another node is answered");
  ok(runFilter(openFilter, open(3n))[0] > 0);
  table.seen(2n);
  ok(runFilter(attrFilter, getattr(2n))[0] > 0, "seen: answered again");
  ok(runFilter(openFilter, open(2n))[0] > 0);
});

/** CREATE of "f" in the root (node 2 in a fresh session): its handle number. */
function create(device: FakeDevice): bigint {
  device.send(frame({
    opcode: Opcode.CREATE,
    unique: 2n,
    body: body([0o102, "u32"], [0o644, "u32"], [0, "u32"], [0, "u32"], "f"),
  }));
  const [created] = device.take();
  deepStrictEqual(created.error, 0);
  return new DataView(created.bytes.buffer).getBigUint64(OUT_HEADER_SIZE + 128, true);
}

const release = (fh: bigint) =>
  frame({
    opcode: Opcode.RELEASE,
    unique: 9n,
    nodeId: 2n,
    body: body([Number(fh), "u64"], [0o1, "u32"], [0, "u32"], [0, "u64"]),
  });

Deno.test("early writes: the reader answers, the filesystem gets the write marked answered", async () => {
  const fs = new MemFs({ writeAhead: 64 });
  const { device } = await initialized(fs);
  const fh = create(device);
  device.send(write(fh, 40, { unique: 3n }));
  const [early] = device.take();
  deepStrictEqual([early.byFilter, early.unique, early.error], [true, 3n, 0], "answered once");
  deepStrictEqual(fs.answeredWrites, 1);
  // The filesystem took it (synchronously here): the credit is back for the next ones.
  await Promise.resolve();
  device.send(write(fh, 40, { unique: 4n }));
  device.send(write(fh, 40, { unique: 5n }));
  deepStrictEqual(device.take().map((r) => [r.unique, r.byFilter]), [[4n, true], [5n, true]]);
  deepStrictEqual(fs.answeredWrites, 3);
  device.send(write(fh, 100, { unique: 6n }));
  deepStrictEqual(
    device.take().map((r) => [r.unique, r.byFilter, r.error]),
    [[6n, false, 0]],
    "larger than the credit: the session answers",
  );
  deepStrictEqual(fs.answeredWrites, 3);
  device.send(release(fh));
  device.take();
  device.send(write(fh, 10, { unique: 10n }));
  deepStrictEqual(device.take().map((r) => r.byFilter), [false], "released: no row left");
});

Deno.test("early writes: a failure of a write answered ahead is kept for the flush", async () => {
  const fs = new MemFs({ writeAhead: 64 });
  const { device } = await initialized(fs);
  const fh = create(device);
  // The file's data goes away under the open handle: the write fails in the filesystem.
  const ctx = { uid: 0, gid: 0, pid: 1 } as unknown as RequestContext;
  const node = { ino: 2n } as Parameters<MemFs["open"]>[1];
  const opened = fs.open(ctx, node, 0o1);
  ok(!(opened instanceof Error) && "handle" in opened);
  opened.handle.inode.data = undefined;
  device.send(write(fh, 10, { unique: 3n }));
  deepStrictEqual(device.take().map((r) => [r.byFilter, r.error]), [[true, 0]]);
  device.send(frame({
    opcode: Opcode.FLUSH,
    unique: 4n,
    nodeId: 2n,
    body: body([Number(fh), "u64"], [0, "u32"], [0, "u32"], [0, "u64"]),
  }));
  const [flushed] = device.take();
  deepStrictEqual([flushed.unique, flushed.byFilter, flushed.error < 0], [4n, false, true]);
});

Deno.test("early writes: none when tracing (every request reaches the session)", async () => {
  const fs = new MemFs({ writeAhead: 64 });
  const { device } = await initialized(fs, { debug: true });
  const fh = create(device);
  device.send(write(fh, 10, { unique: 3n }));
  deepStrictEqual(device.take().map((r) => r.byFilter), [false]);
  deepStrictEqual(fs.answeredWrites, 0);
});

const flush = (fh: bigint, unique = 8n) =>
  frame({
    opcode: Opcode.FLUSH,
    unique,
    nodeId: 2n,
    body: body([Number(fh), "u64"], [0, "u32"], [0, "u32"], [0, "u64"]),
  });

Deno.test("quiet flushes filter: answers a flush of a quiet row until a write goes through it", () => {
  const table = new EarlyWrites();
  const ahead = evaluated(table.filter);
  const quiet = evaluated(table.quietFlushes);
  deepStrictEqual(runFilter(quiet, flush(3n))[0], 0, "no row");
  ok(table.grant(3n, 0, true));
  const [n, reply] = runFilter(quiet, flush(3n, 77n));
  deepStrictEqual(n, OUT_HEADER_SIZE);
  deepStrictEqual(
    [reply.getUint32(0, true), reply.getInt32(4, true), reply.getBigUint64(8, true)],
    [OUT_HEADER_SIZE, 0, 77n],
  );
  deepStrictEqual(runFilter(quiet, flush(3n))[0], OUT_HEADER_SIZE, "again: still quiet");
  deepStrictEqual(runFilter(quiet, flush(4n))[0], 0, "another handle");
  const f = flush(3n);
  deepStrictEqual(runFilter(quiet, f, f.length - 1)[0], 0, "length disagrees with the header");
  const zero = flush(0n);
  deepStrictEqual(runFilter(quiet, zero)[0], 0, "handle 0");
  // The filter run ahead saw a write (no credit: not answered): no longer quiet.
  deepStrictEqual(runFilter(ahead, write(3n, 10))[0], 0);
  ok(!table.quiet(3n));
  deepStrictEqual(runFilter(quiet, flush(3n))[0], 0, "after a write");

  // A write only the answering filters see (io_uring rings run no `ahead`) ends it too.
  ok(table.grant(5n, 64, true));
  deepStrictEqual(runFilter(quiet, write(5n, 10))[0], 0, "a write is never answered there");
  deepStrictEqual(runFilter(quiet, flush(5n))[0], 0);
  // A write answered ahead ends it as well.
  ok(table.grant(6n, 64, true));
  deepStrictEqual(runFilter(ahead, write(6n, 10))[0], OUT_HEADER_SIZE + WRITE_OUT_SIZE);
  deepStrictEqual(runFilter(quiet, flush(6n))[0], 0);

  ok(table.grant(7n, 64));
  deepStrictEqual(runFilter(quiet, flush(7n))[0], 0, "granted without quiet");
  ok(table.grant(8n, 0, true));
  table.end(8n);
  deepStrictEqual(runFilter(quiet, flush(8n))[0], 0, "ended");
  const fh = flush(9n);
  ok(table.grant(9n, 0, true));
  new DataView(fh.buffer).setBigUint64(IN_HEADER_SIZE + FlushInOffset.FH, 9n + 4096n, true);
  deepStrictEqual(runFilter(quiet, fh)[0], 0, "same row, another handle");
});

Deno.test("quiet flushes: a flush before any write never reaches the filesystem, one after it does", async () => {
  const fs = new MemFs({ writeAhead: 64, quietFlush: true });
  const { device } = await initialized(fs);
  const fh = create(device);
  const delivered = device.delivered;
  device.send(flush(fh, 3n));
  deepStrictEqual(device.take().map((r) => [r.unique, r.byFilter, r.error]), [[3n, true, 0]]);
  deepStrictEqual([fs.flushes, device.delivered], [0, delivered], "not handed on");
  device.send(write(fh, 10, { unique: 4n }));
  device.take();
  device.send(flush(fh, 5n));
  deepStrictEqual(device.take().map((r) => [r.unique, r.byFilter]), [[5n, false]]);
  deepStrictEqual(fs.flushes, 1);
  device.send(release(fh));
  device.take();
  // Without `quietFlush`, every flush reaches it.
  const plain = new MemFs({ writeAhead: 64 });
  const second = await initialized(plain);
  const fh2 = create(second.device);
  second.device.send(flush(fh2, 6n));
  deepStrictEqual(second.device.take().map((r) => r.byFilter), [false]);
  deepStrictEqual(plain.flushes, 1);
});

Deno.test("quiet flushes: an open whose answer the kernel did not take leaves no row", async () => {
  const fs = new MemFs({ writeAhead: 64, quietFlush: true });
  const { device } = await initialized(fs);
  device.failNextReply(ERRNO.ENOENT); // the opener was interrupted
  device.send(frame({
    opcode: Opcode.CREATE,
    unique: 2n,
    body: body([0o102, "u32"], [0o644, "u32"], [0, "u32"], [0, "u32"], "g"),
  }));
  deepStrictEqual(device.take(), []);
  for (let fh = 1n; fh < 8n; fh++) {
    device.send(flush(fh, 10n + fh));
  }
  deepStrictEqual(device.take().every((r) => !r.byFilter), true);
});
