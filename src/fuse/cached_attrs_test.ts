// Cached attributes without a kernel: the reader-side filter (evaluated from its shipped
// source, as the reader worker does) and the session that records and ends entries.

import { deepStrictEqual, ok } from "node:assert/strict";
import { MemFs } from "../../tests/fuse/memfs.ts";
import { body, evaluated, frame, initialized, runFilter } from "./_test_utils.ts";
import { ATTR_OUT_SIZE, ATTR_SIZE, Opcode, OUT_HEADER_SIZE } from "./abi.ts";
import { CachedAttrs } from "./cached_attrs.ts";

const getattr = (nodeId: bigint, unique = 7n) =>
  frame({ opcode: Opcode.GETATTR, unique, nodeId, body: body([0, "u32"], [0, "u32"], [0, "u64"]) });

const attrBytes = (fill: number): Uint8Array => new Uint8Array(ATTR_SIZE).fill(fill);

/** A read-only OPEN of node 2. */
const openFile = (unique: bigint) =>
  frame({ opcode: Opcode.OPEN, unique, nodeId: 2n, body: body([0o100000, "u32"], [0, "u32"]) });

/** A SETATTR of node 2's mode (fuse_setattr_in: valid FATTR_MODE at 0, mode at 68). */
function chmod(unique: bigint, mode: number): Uint8Array {
  const setattr = new Uint8Array(88);
  new DataView(setattr.buffer).setUint32(0, 1, true);
  new DataView(setattr.buffer).setUint32(68, mode, true);
  return frame({ opcode: Opcode.SETATTR, unique, nodeId: 2n, body: setattr });
}

Deno.test("cached attrs filter: answers GETATTR of recorded nodes with their attributes", () => {
  const table = new CachedAttrs();
  const filter = evaluated(table.filter);
  deepStrictEqual(runFilter(filter, getattr(5n))[0], 0, "not recorded");
  table.record(5n, attrBytes(0xab), 60);
  const [n, reply] = runFilter(filter, getattr(5n, 1234n));
  deepStrictEqual(n, OUT_HEADER_SIZE + ATTR_OUT_SIZE);
  deepStrictEqual(
    [reply.getUint32(0, true), reply.getInt32(4, true), reply.getBigUint64(8, true)],
    [OUT_HEADER_SIZE + ATTR_OUT_SIZE, 0, 1234n],
  );
  const valid = Number(reply.getBigUint64(16, true)) + reply.getUint32(24, true) / 1e9;
  ok(valid > 58 && valid <= 60, `the time left: ${valid}`);
  deepStrictEqual(
    new Uint8Array(reply.buffer, OUT_HEADER_SIZE + 16, ATTR_SIZE),
    attrBytes(0xab),
    "the recorded attributes",
  );
  table.record(5n, attrBytes(0xcd), 60);
  deepStrictEqual(
    new Uint8Array(runFilter(filter, getattr(5n))[1].buffer, 32, 1)[0],
    0xcd,
    "rewritten",
  );
  deepStrictEqual(runFilter(filter, getattr(6n))[0], 0, "another node");
  deepStrictEqual(runFilter(filter, getattr(5n + (1n << 14n)))[0], 0, "same slot, other node");
  const f = getattr(5n);
  deepStrictEqual(runFilter(filter, f, 55)[0], 0, "shorter than header + getattr_in");
  deepStrictEqual(runFilter(filter, f, f.length - 1)[0], 0, "length disagrees with the header");
  table.end(5n);
  deepStrictEqual(runFilter(filter, getattr(5n))[0], 0, "ended");
  table.record(5n, attrBytes(1), 0);
  deepStrictEqual(runFilter(filter, getattr(5n))[0], 0, "no time: not recorded");
});

Deno.test("cached attrs: the session records stable attributes and ends them at changes", async () => {
  const fs = new MemFs({ rootMode: 0o777, stableAttrs: true, attrTimeout: 60 });
  const { device, session } = await initialized(fs);
  device.send(
    frame({ opcode: Opcode.MKDIR, unique: 2n, body: body([0o755, "u32"], [0, "u32"], "d") }),
  );
  device.take();
  // The MKDIR's own entry is not repeated (a change was in flight); the GETATTR's answer is.
  device.send(getattr(2n, 2n));
  deepStrictEqual([device.take()[0].byFilter, fs.getattrCalls], [false, 1]);
  device.send(getattr(2n, 3n));
  const [cached] = device.take();
  ok(cached.byFilter, "answered by the reader");
  deepStrictEqual([cached.unique, cached.error, fs.getattrCalls], [3n, 0, 1]);
  const mode = new DataView(cached.bytes.buffer).getUint32(OUT_HEADER_SIZE + 16 + 60, true);
  deepStrictEqual(mode & 0o7777, 0o755);
  // A chmod through the mount ends it; the answer after it is recorded again.
  device.send(chmod(4n, 0o700));
  device.send(getattr(2n, 5n));
  const [set, asked] = device.take();
  deepStrictEqual([set.error, asked.byFilter, fs.getattrCalls], [0, false, 2]);
  device.send(getattr(2n, 6n));
  deepStrictEqual(device.take()[0].byFilter, true, "recorded from the GETATTR answer");
  // An invalidation (a change the filesystem saw) ends it too.
  await session.invalidateInode(session.nodes.get(2n)!, -1);
  device.send(getattr(2n, 7n));
  deepStrictEqual([device.take()[0].byFilter, fs.getattrCalls], [false, 3]);
  device.end();
  await session.closed;
});

/** A MemFs whose getattr and open answer only when the test lets them (`release()`). */
class GatedFs extends MemFs {
  #gates: (() => void)[] = [];
  override getattr(...args: Parameters<MemFs["getattr"]>): ReturnType<MemFs["getattr"]> {
    const answer = super.getattr(...args);
    return new Promise((resolve) => this.#gates.push(() => resolve(answer))) as never;
  }
  override open(...args: Parameters<MemFs["open"]>): ReturnType<MemFs["open"]> {
    const answer = super.open(...args);
    return new Promise((resolve) => this.#gates.push(() => resolve(answer))) as never;
  }
  /** Lets the pending answers go, in order. */
  letGo(): void {
    for (const go of this.#gates.splice(0)) go();
  }
}

Deno.test("cached attrs and opens: an answer a change overlapped is not repeated", async () => {
  const fs = new GatedFs({ rootMode: 0o777, stableAttrs: true, attrTimeout: 60, reuseOpens: 60 });
  const { device, session } = await initialized(fs);
  device.send(frame({
    opcode: Opcode.CREATE,
    unique: 2n,
    body: body([0o102, "u32"], [0o644, "u32"], [0, "u32"], [0, "u32"], "f"),
  }));
  device.take();
  // GETATTR and OPEN are asked; a chmod of the file comes and is answered before them.
  device.send(getattr(2n, 3n));
  device.send(openFile(4n));
  device.send(chmod(5n, 0o600));
  fs.letGo();
  await new Promise((r) => setTimeout(r, 10));
  deepStrictEqual(device.take().map((r) => [r.unique, r.error]).sort(), [[3n, 0], [4n, 0], [
    5n,
    0,
  ]]);
  // Neither answer is repeated by the reader: both may show the file from before the chmod.
  device.send(getattr(2n, 6n));
  device.send(openFile(7n));
  await new Promise((r) => setTimeout(r, 0));
  fs.letGo();
  await new Promise((r) => setTimeout(r, 10));
  deepStrictEqual(device.take().map((r) => [r.unique, r.byFilter]).sort(), [[6n, false], [
    7n,
    false,
  ]]);
  device.end();
  await session.closed;
});

Deno.test("cached attrs: attributes recorded from within a larger buffer, aligned or not", () => {
  const table = new CachedAttrs();
  const filter = evaluated(table.filter);
  const attr = Uint8Array.from({ length: ATTR_SIZE }, (_, i) => i * 7 + 1);
  const reply = new Uint8Array(256);
  reply.set(attr, 40);
  table.record(7n, reply, 60, 40);
  const odd = new Uint8Array(260).subarray(2); // byteOffset 2: its words are not aligned
  odd.set(attr, 41);
  table.record(8n, odd, 60, 41);
  for (const node of [7n, 8n]) {
    const [n, answer] = runFilter(filter, getattr(node));
    deepStrictEqual(n, OUT_HEADER_SIZE + ATTR_OUT_SIZE);
    deepStrictEqual(new Uint8Array(answer.buffer, OUT_HEADER_SIZE + 16, ATTR_SIZE), attr);
  }
  table.record(9n, reply, 60, 256 - ATTR_SIZE + 1);
  deepStrictEqual(runFilter(filter, getattr(9n))[0], 0, "attributes past the buffer's end");
});
