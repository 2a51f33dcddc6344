// The no-xattrs shortcut without a kernel: the reader-side filter (evaluated from its shipped
// source, as the reader worker does) and the session that fills its table.

import { ERRNO } from "../linux/mod.ts";
import { deepStrictEqual, ok } from "node:assert/strict";
import { MemFs } from "../../tests/fuse/memfs.ts";
import { body, evaluated, frame, initialized, runFilter } from "./_test_utils.ts";
import { Opcode, OUT_HEADER_SIZE } from "./abi.ts";
import { NoXattrs } from "./no_xattrs.ts";

const getxattr = (nodeId: bigint, unique = 7n) =>
  frame({ opcode: Opcode.GETXATTR, unique, nodeId, body: body([0, "u32"], [0, "u32"], "a.b") });

/** MKDIR "d" in the root (its node is 2 in a fresh session). */
const mkdirD = () =>
  frame({ opcode: Opcode.MKDIR, unique: 2n, body: body([0o755, "u32"], [0, "u32"], "d") });

Deno.test("no-xattrs filter: answers GETXATTR (ENODATA) and LISTXATTR (empty) on listed nodes only", () => {
  const table = new NoXattrs();
  const filter = evaluated(table.filter);
  deepStrictEqual(runFilter(filter, getxattr(5n))[0], 0, "unlisted");
  table.mark(5n, 60);
  const [n, reply] = runFilter(filter, getxattr(5n, 1234n));
  deepStrictEqual(n, OUT_HEADER_SIZE);
  deepStrictEqual(
    [reply.getUint32(0, true), reply.getInt32(4, true), reply.getBigUint64(8, true)],
    [OUT_HEADER_SIZE, -ERRNO.ENODATA, 1234n],
  );
  deepStrictEqual(runFilter(filter, getxattr(6n))[0], 0, "another node");
  // 2^15 apart: the same hash slot, a different node.
  deepStrictEqual(runFilter(filter, getxattr(5n + (1n << 15n)))[0], 0, "same slot, other node");
  const listxattr = (size: number) =>
    frame({
      opcode: Opcode.LISTXATTR,
      unique: 9n,
      nodeId: 5n,
      body: body([size, "u32"], [0, "u32"]),
    });
  const [sized, sizeReply] = runFilter(filter, listxattr(0));
  deepStrictEqual(sized, OUT_HEADER_SIZE + 8, "LISTXATTR's size probe: size 0");
  deepStrictEqual(
    [sizeReply.getUint32(0, true), sizeReply.getInt32(4, true), sizeReply.getBigUint64(8, true)],
    [OUT_HEADER_SIZE + 8, 0, 9n],
  );
  deepStrictEqual(sizeReply.getBigUint64(OUT_HEADER_SIZE, true), 0n);
  const [listed, listReply] = runFilter(filter, listxattr(4096));
  deepStrictEqual(listed, OUT_HEADER_SIZE, "LISTXATTR into a buffer: an empty list");
  deepStrictEqual([listReply.getUint32(0, true), listReply.getInt32(4, true)], [
    OUT_HEADER_SIZE,
    0,
  ]);
  const removexattr = frame({ opcode: Opcode.REMOVEXATTR, nodeId: 5n, body: body("user.abcdef") });
  ok(removexattr.length >= 48);
  deepStrictEqual(runFilter(filter, removexattr)[0], 0, "other opcodes pass");
  const f = getxattr(5n);
  deepStrictEqual(runFilter(filter, f, 47)[0], 0, "shorter than header + getxattr_in");
  deepStrictEqual(runFilter(filter, f, f.length - 1)[0], 0, "length disagrees with the header");
  table.mark(5n, 0);
  deepStrictEqual(runFilter(filter, getxattr(5n))[0], 0, "unlisted again");
});

Deno.test("no-xattrs filter: colliding nodes share probes; a full probe sequence drops new ones", () => {
  const table = new NoXattrs();
  const filter = evaluated(table.filter);
  const colliding = Array.from({ length: 9 }, (_, i) => 3n + (BigInt(i) << 15n));
  for (const node of colliding) table.mark(node, 60);
  for (const node of colliding.slice(0, 8)) {
    deepStrictEqual(runFilter(filter, getxattr(node))[0], 16);
  }
  deepStrictEqual(runFilter(filter, getxattr(colliding[8]))[0], 0, "the ninth found no slot");
  table.mark(colliding[0], 0);
  table.mark(colliding[8], 60);
  deepStrictEqual(runFilter(filter, getxattr(colliding[8]))[0], 16, "an expired slot is reused");
  deepStrictEqual(runFilter(filter, getxattr(colliding[0]))[0], 0);
});

Deno.test("no-xattrs: the session lists entries without xattrs; SETXATTR ends it", async () => {
  const fs = new MemFs({ reportNoXattrs: true });
  const { device, session } = await initialized(fs);
  device.send(mkdirD());
  device.take();
  device.send(getxattr(2n, 3n));
  const [answered] = device.take();
  ok(answered.byFilter, "answered by the reader filter");
  deepStrictEqual([answered.unique, answered.error], [3n, -ERRNO.ENODATA]);
  deepStrictEqual(fs.getxattrCalls, 0);
  device.send(
    frame({
      opcode: Opcode.SETXATTR,
      unique: 4n,
      nodeId: 2n,
      body: body([1, "u32"], [0, "u32"], "user.k", new Uint8Array([1])),
    }),
  );
  device.send(getxattr(2n, 5n));
  const [set, got] = device.take();
  deepStrictEqual([set.error, got.byFilter, got.unique], [0, false, 5n]);
  deepStrictEqual(fs.getxattrCalls, 1, "the filesystem answers once the node has xattrs");
  device.end();
  await session.closed;
});

Deno.test("no-xattrs: an inode's invalidation ends it, unless only its contents changed", async () => {
  const fs = new MemFs({ reportNoXattrs: true });
  const { device, session } = await initialized(fs);
  device.send(mkdirD());
  device.take();
  const node = session.nodes.get(2n)!;
  // Written: a write never adds an xattr (the kernel asks security.capability before each).
  await session.invalidateInode(node, 0, 0, true);
  device.send(getxattr(2n, 3n));
  deepStrictEqual(device.take().map((r) => [r.byFilter, r.error]), [[true, -ERRNO.ENODATA]]);
  // Any other change may have set one: the filesystem answers.
  await session.invalidateInode(node, -1, 0);
  device.send(getxattr(2n, 4n));
  deepStrictEqual(device.take().map((r) => [r.byFilter, r.error]), [[false, -ERRNO.ENODATA]]);
  deepStrictEqual(fs.getxattrCalls, 1);
  device.end();
  await session.closed;
});

Deno.test("no-xattrs: off while tracing (the trace shows every request)", async () => {
  const fs = new MemFs({ reportNoXattrs: true });
  const { device, session } = await initialized(fs, { debug: true });
  device.send(mkdirD());
  device.send(getxattr(2n, 3n));
  const replies = device.take();
  deepStrictEqual(replies.map((r) => [r.byFilter, r.error]), [[false, 0], [false, -ERRNO.ENODATA]]);
  deepStrictEqual(fs.getxattrCalls, 1);
  device.end();
  await session.closed;
});
