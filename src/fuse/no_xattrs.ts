/**
 * The "no xattrs" shortcut, in one place: GETXATTR on an inode the filesystem reported as
 * having no extended attributes (`Entry.noXattrs`, `AttrResult.noXattrs`) is answered ENODATA,
 * and LISTXATTR with an empty list, on the device's reader thread, without handing the request
 * to the session (`cp -a` lists every file's xattrs twice and asks for one).
 *
 * Why here: the kernel asks for security.capability (and `ls -l` for ACLs) on every file it
 * looks at — some 12,000 GETXATTRs per `ls -lR` of a container's /usr. The filesystem knows the
 * answer from the stat it just made; the session records it here as it sends the entry or the
 * attributes, and the reader answers the kernel at once. Those requests then cost neither a
 * satellite round trip nor a turn of the JS thread, which is busy with the LOOKUP and
 * READDIRPLUS replies of the same listing. Only the session writes the table; the device only
 * runs "a filter that may answer a request" and knows no opcode.
 *
 * Invariants: an entry lasts at most the attribute timeout it came with (as the kernel's cached
 * attributes do); SETXATTR and REMOVEXATTR on the node end it before the filesystem is called;
 * the table is lossy (a full probe sequence drops the new entry: GETXATTR then reaches the
 * filesystem, which answers the same).
 *
 * @module
 */

import { ERRNO } from "../linux/mod.ts";
import {
  FILTER_HEADER,
  type FilterHeader,
  GETXATTR_IN_SIZE,
  GETXATTR_OUT_SIZE,
  IN_HEADER_SIZE,
  Opcode,
} from "./abi.ts";
import { type ReaderFilter, type RequestFilter, shipFilter } from "./device.ts";
import { freeRow, PROBES, rowOf } from "./node_rows.ts";

/** Table entries: [nodeId, until ms] pairs, open addressing (a power of two). */
const SLOTS = 1 << 15;

/** What the filter needs to know of the ABI besides the headers. */
interface FilterConstants extends FilterHeader {
  readonly opcode: number;
  readonly listOpcode: number;
  readonly getxattrOutSize: number;
  readonly enodata: number;
  readonly minLength: number;
  readonly slots: number;
  readonly probes: number;
}

const CONSTANTS: FilterConstants = {
  ...FILTER_HEADER,
  opcode: Opcode.GETXATTR,
  listOpcode: Opcode.LISTXATTR,
  getxattrOutSize: GETXATTR_OUT_SIZE,
  enodata: ERRNO.ENODATA,
  minLength: IN_HEADER_SIZE + GETXATTR_IN_SIZE,
  slots: SLOTS,
  probes: PROBES,
};

/**
 * The reader-thread side: answers GETXATTR on a listed, unexpired node with ENODATA and
 * LISTXATTR with an empty list (returns the reply's length), else 0. Self-contained (its source is shipped to the reader worker):
 * it uses only its arguments and JavaScript globals.
 */
export function noXattrsFilter(state: SharedArrayBuffer, k: FilterConstants): RequestFilter {
  const table = new BigInt64Array(state);
  const mask = k.slots - 1;
  return (request: DataView, length: number, reply: DataView): number => {
    if (length < k.minLength) return 0;
    const opcode = request.getUint32(k.opcodeAt, true);
    if (opcode !== k.opcode && opcode !== k.listOpcode) return 0;
    if (request.getUint32(k.lenAt, true) !== length) return 0;
    const node = request.getBigInt64(k.nodeIdAt, true);
    const h = request.getUint32(k.nodeIdAt, true) & mask;
    for (let p = 0; p < k.probes; p++) {
      const i = (h + p) & mask;
      if (Atomics.load(table, 2 * i) !== node) continue;
      if (Atomics.load(table, 2 * i + 1) <= BigInt(Date.now())) return 0;
      reply.setBigUint64(k.outUniqueAt, request.getBigUint64(k.uniqueAt, true), true);
      if (opcode === k.opcode) {
        reply.setUint32(k.outLenAt, k.outSize, true);
        reply.setInt32(k.outErrorAt, -k.enodata, true);
        return k.outSize;
      }
      // LISTXATTR: an empty list; asked its size (fuse_getxattr_in.size 0), the size 0.
      reply.setInt32(k.outErrorAt, 0, true);
      if (request.getUint32(k.body, true) !== 0) {
        reply.setUint32(k.outLenAt, k.outSize, true);
        return k.outSize;
      }
      reply.setUint32(k.outLenAt, k.outSize + k.getxattrOutSize, true);
      reply.setBigUint64(k.outSize, 0n, true); // size, padding
      return k.outSize + k.getxattrOutSize;
    }
    return 0;
  };
}

/** The session-side table of nodes known to have no xattrs. */
export class NoXattrs {
  /** What the device runs on its reader thread. */
  readonly filter: ReaderFilter;
  #table: BigInt64Array;
  /** `#table` as 32-bit halves, probed without making BigInts (see node_rows.ts). */
  #halves: Int32Array;

  constructor() {
    const state = new SharedArrayBuffer(SLOTS * 16);
    this.#table = new BigInt64Array(state);
    this.#halves = new Int32Array(state);
    this.filter = shipFilter(noXattrsFilter, state, CONSTANTS);
  }

  /** Lists `nodeId` for `seconds` (0 or less: unlists it). */
  mark(nodeId: bigint, seconds: number): void {
    const q = this.#table;
    const id = Number(nodeId);
    const now = Date.now();
    const untilMs = seconds > 0 ? Math.floor(now + seconds * 1000) : 0;
    const until = BigInt(untilMs);
    const own = rowOf(this.#halves, 2, id);
    if (own >= 0) {
      Atomics.store(q, 2 * own + 1, until);
      return;
    }
    const free = untilMs > now ? freeRow(this.#halves, 2, id, now) : -1;
    if (free < 0) return;
    const node = BigInt.asIntN(64, nodeId);
    // Invalidate, then re-key: the reader never pairs the new key with an old deadline.
    Atomics.store(q, 2 * free + 1, 0n);
    Atomics.store(q, 2 * free, node);
    Atomics.store(q, 2 * free + 1, until);
  }
}
