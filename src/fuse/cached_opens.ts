/**
 * Cached opens, in one place: OPEN/OPENDIR of a node whose earlier open the filesystem marked
 * reusable (`Opened.reuse`) is answered on the device's reader thread, with the same open flags
 * and a handle number of the reader's own; RELEASE/RELEASEDIR of such a handle that nothing
 * else used is answered there too.
 *
 * Why here: a warm `grep -r` opens and closes every file, a warm `ls -R` every directory, and
 * the kernel serves the rest from its caches; each open is a round trip the process waits for.
 * Through the JavaScript thread it costs ~30 µs; on the reader thread a few. The filesystem
 * decides what may be reused (a read-only open of a file whose pages the container's change
 * feed vouches for, a directory whose listing the kernel keeps): the session only repeats that
 * answer to the same request.
 *
 * Invariants:
 * - A mark holds the exact open flags of the request it repeats, the FOPEN_* flags answered, and
 *   a deadline (the filesystem's `reuse` seconds). It ends at the deadline and whenever the
 *   session tells the kernel the node changed (its inode or an entry in it invalidated) or any
 *   request that may change it reaches the session; it is never extended by the reader.
 * - Handle numbers the reader makes have bit 63 set (`CACHED_FH_BIT`); the session's own are
 *   small counters. The reader's come from one shared counter, so copies of the filter on
 *   several threads (one per io_uring ring) never make the same number: the session's handle of
 *   an adopted number belongs to one open of one node.
 * - A request carrying such a number reaches the session only once the kernel needs more than
 *   the cache (a READ when the pages are gone, a READDIR, an fstat): the session then asks the
 *   filesystem for a handle (`FileSystem.cachedHandle`) and counts the number as adopted before
 *   it answers; its RELEASE then goes to the session (the kernel sends RELEASE only after every
 *   request on the file was answered).
 * - The tables are lossy (a full probe sequence drops a new mark: the open then reaches the
 *   filesystem, which answers the same).
 * - A node with a write answered ahead that the session has not seen yet (`held`, see
 *   early_writes.ts) is not opened from a mark.
 *
 * @module
 */

import {
  FILTER_HEADER,
  type FilterHeader,
  IN_HEADER_SIZE,
  Opcode,
  OPEN_IN_SIZE,
  OPEN_OUT_SIZE,
  RELEASE_IN_MIN_SIZE,
} from "./abi.ts";
import { type ReaderFilter, type RequestFilter, shipFilter } from "./device.ts";
import { freeRow, PROBES, rowOf } from "./node_rows.ts";

/** Set in every handle number the reader makes (and in none the session makes). */
export const CACHED_FH_BIT = 1n << 63n;

/** Marks: [nodeId, until ms, flags word] triples, open addressing (a power of two). */
const SLOTS = 1 << 14;
/** Adoption counts by the low bits of a handle number. */
const ADOPTED_SLOTS = 1 << 16;

/** What the filter needs to know of the ABI besides the headers. */
interface FilterConstants extends FilterHeader {
  readonly open: number;
  readonly opendir: number;
  readonly release: number;
  readonly releasedir: number;
  readonly openMin: number;
  readonly releaseMin: number;
  readonly openOutSize: number;
  readonly slots: number;
  readonly probes: number;
  readonly adoptedSlots: number;
}

const CONSTANTS: FilterConstants = {
  ...FILTER_HEADER,
  open: Opcode.OPEN,
  opendir: Opcode.OPENDIR,
  release: Opcode.RELEASE,
  releasedir: Opcode.RELEASEDIR,
  openMin: IN_HEADER_SIZE + OPEN_IN_SIZE,
  releaseMin: IN_HEADER_SIZE + RELEASE_IN_MIN_SIZE,
  openOutSize: OPEN_OUT_SIZE,
  slots: SLOTS,
  probes: PROBES,
  adoptedSlots: ADOPTED_SLOTS,
};

/** The shared state: the marks table, the adoption counts, the last handle number made, held nodes. */
interface State {
  readonly marks: SharedArrayBuffer;
  readonly adopted: SharedArrayBuffer;
  readonly issued: SharedArrayBuffer;
  readonly held: SharedArrayBuffer;
}

/**
 * The reader-thread side: answers OPEN/OPENDIR of a marked node with the same flags, and
 * RELEASE/RELEASEDIR of its own unadopted handles; else 0. Self-contained (its source is
 * shipped to the reader worker): it uses only its arguments and JavaScript globals.
 */
export function cachedOpensFilter(state: State, k: FilterConstants): RequestFilter {
  const marks = new BigInt64Array(state.marks);
  const adopted = new Int32Array(state.adopted);
  const issued = new BigInt64Array(state.issued);
  const held = new Int32Array(state.held);
  const mask = k.slots - 1;
  const fhBit = 1n << 63n;
  const header = (reply: DataView, request: DataView, length: number): void => {
    reply.setUint32(k.outLenAt, length, true);
    reply.setInt32(k.outErrorAt, 0, true);
    reply.setBigUint64(k.outUniqueAt, request.getBigUint64(k.uniqueAt, true), true);
  };
  return (request: DataView, length: number, reply: DataView): number => {
    const opcode = request.getUint32(k.opcodeAt, true);
    if (request.getUint32(k.lenAt, true) !== length) return 0;
    if (opcode === k.release || opcode === k.releasedir) {
      if (length < k.releaseMin) return 0;
      const fh = request.getBigUint64(k.body, true);
      if (fh < fhBit) return 0;
      if (Atomics.load(adopted, Number(fh & BigInt(k.adoptedSlots - 1))) !== 0) return 0;
      header(reply, request, k.outSize);
      return k.outSize;
    }
    if ((opcode !== k.open && opcode !== k.opendir) || length < k.openMin) return 0;
    if (Atomics.load(held, request.getUint32(k.nodeIdAt, true) & (held.length - 1)) !== 0) return 0;
    const node = request.getBigInt64(k.nodeIdAt, true);
    const flags = request.getUint32(k.body, true);
    const h = request.getUint32(k.nodeIdAt, true) & mask;
    for (let p = 0; p < k.probes; p++) {
      const i = (h + p) & mask;
      if (Atomics.load(marks, 3 * i) !== node) continue;
      const until = Atomics.load(marks, 3 * i + 1);
      const word = Atomics.load(marks, 3 * i + 2);
      // Re-keyed meanwhile (the session clears the deadline first): not this node's mark.
      if (Atomics.load(marks, 3 * i) !== node || until <= BigInt(Date.now())) return 0;
      const dir = (word >> 48n) & 1n;
      if (Number(word & 0xffffffffn) !== flags || dir !== (opcode === k.opendir ? 1n : 0n)) {
        return 0;
      }
      header(reply, request, k.outSize + k.openOutSize);
      const fh = fhBit | BigInt.asUintN(63, Atomics.add(issued, 0, 1n) + 1n);
      reply.setBigUint64(k.outSize, fh, true);
      reply.setUint32(k.outSize + 8, Number((word >> 32n) & 0xffffn), true);
      reply.setUint32(k.outSize + 12, 0, true);
      return k.outSize + k.openOutSize;
    }
    return 0;
  };
}

/** The session-side tables of reusable opens and adopted handle numbers. */
export class CachedOpens {
  /** What the device runs on its reader thread. */
  readonly filter: ReaderFilter;
  #marks: BigInt64Array;
  /** `#marks` as 32-bit halves, probed without making BigInts (see node_rows.ts). */
  #markHalves: Int32Array;
  #adopted: Int32Array;
  /** Marked node ids (to end marks without probing for nodes never marked). */
  #marked = new Set<bigint>();

  /** `held`: the nodes not to open from a mark (`EarlyWrites.held`; a power of two of counters). */
  constructor(held: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    const state: State = {
      marks: new SharedArrayBuffer(SLOTS * 24),
      adopted: new SharedArrayBuffer(ADOPTED_SLOTS * 4),
      issued: new SharedArrayBuffer(8),
      held,
    };
    this.#marks = new BigInt64Array(state.marks);
    this.#markHalves = new Int32Array(state.marks);
    this.#adopted = new Int32Array(state.adopted);
    this.filter = shipFilter(cachedOpensFilter, state, CONSTANTS);
  }

  /**
   * Opens of `nodeId` (a directory or not) with exactly `flags` are answered with `fopenFlags`
   * for `seconds` (0 or less: ends the mark). The caller marks only answers no change overlapped.
   */
  mark(nodeId: bigint, dir: boolean, flags: number, fopenFlags: number, seconds: number): void {
    const q = this.#marks;
    const node = BigInt.asIntN(64, nodeId);
    const now = Date.now();
    const until = BigInt(seconds > 0 ? Math.floor(now + seconds * 1000) : 0);
    const word = (dir ? 1n << 48n : 0n) | (BigInt(fopenFlags & 0xffff) << 32n) |
      BigInt(flags >>> 0);
    const own = rowOf(this.#markHalves, 3, Number(nodeId));
    if (own >= 0) {
      Atomics.store(q, 3 * own + 1, 0n);
      Atomics.store(q, 3 * own + 2, word);
      Atomics.store(q, 3 * own + 1, until);
      if (until === 0n) this.#marked.delete(nodeId);
      else this.#marked.add(nodeId);
      return;
    }
    const free = until === 0n ? -1 : freeRow(this.#markHalves, 3, Number(nodeId), now);
    if (free < 0) return;
    // Invalidate, then re-key: the reader never pairs the new key with an old deadline.
    Atomics.store(q, 3 * free + 1, 0n);
    Atomics.store(q, 3 * free, node);
    Atomics.store(q, 3 * free + 2, word);
    Atomics.store(q, 3 * free + 1, until);
    this.#marked.add(nodeId);
  }

  /** Ends `nodeId`'s mark (it changes, or may have). */
  end(nodeId: bigint): void {
    if (this.#marked.has(nodeId)) this.mark(nodeId, false, 0, 0, 0);
  }

  /** True for handle numbers the reader made. */
  static made(fh: bigint): boolean {
    return fh >= CACHED_FH_BIT;
  }

  /** The session holds a handle for the reader's number `fh`: its RELEASE comes to it. */
  adopt(fh: bigint): void {
    Atomics.add(this.#adopted, Number(fh & BigInt(ADOPTED_SLOTS - 1)), 1);
  }

  /** The session released its handle for `fh`. */
  released(fh: bigint): void {
    Atomics.sub(this.#adopted, Number(fh & BigInt(ADOPTED_SLOTS - 1)), 1);
  }
}
