/**
 * Cached attributes, in one place: GETATTR of a node whose attributes the filesystem reported
 * stable (`Entry.stable`, `AttrResult.stable`: they stay as told until the filesystem
 * invalidates the inode) is answered on the device's reader thread with those attributes.
 *
 * Why here: the kernel drops a file's atime after every READ it sends and asks GETATTR at the
 * next stat; a second `grep -r` of a tree read once asks it for every file (its fstat). The
 * filesystem would answer from what it told anyway; the reader answers without a turn of the
 * JavaScript thread.
 *
 * Invariants:
 * - An entry holds the 88-byte fuse_attr the session last sent for the node and the deadline
 *   of its attribute timeout; answers carry the time left. It ends at the deadline, when the
 *   session tells the kernel the node changed, and when a request that may change it reaches
 *   the session (the same points that end a cached open).
 * - Each slot has a sequence number, odd while the session writes it: the reader copies an
 *   entry and uses it only if the number was even and unchanged around the copy. Every access
 *   is atomic (the attributes as 32-bit words), so the check holds on weakly ordered CPUs too.
 * - The session records only answers that no change through the mount overlapped, or a
 *   change's own answer of its directory when no other change overlapped it (see `Session`),
 *   and ends an entry when an answer for the node is not stable.
 * - The table is lossy (a full probe sequence drops a new entry: GETATTR then reaches the
 *   filesystem, which answers the same).
 * - A node with a write answered ahead that the session has not seen yet (`held`, see
 *   early_writes.ts) is not answered for.
 *
 * @module
 */

import {
  ATTR_OUT_SIZE,
  ATTR_SIZE,
  FILTER_HEADER,
  type FilterHeader,
  GETATTR_IN_SIZE,
  IN_HEADER_SIZE,
  Opcode,
} from "./abi.ts";
import { type ReaderFilter, type RequestFilter, shipFilter } from "./device.ts";
import { freeRow, PROBES, rowOf } from "./node_rows.ts";

const SLOTS = 1 << 14;

/** What the filter needs to know of the ABI besides the headers. */
interface FilterConstants extends FilterHeader {
  readonly opcode: number;
  readonly minLength: number;
  readonly attrOutSize: number;
  readonly attrSize: number;
  readonly slots: number;
  readonly probes: number;
}

const CONSTANTS: FilterConstants = {
  ...FILTER_HEADER,
  opcode: Opcode.GETATTR,
  minLength: IN_HEADER_SIZE + GETATTR_IN_SIZE,
  attrOutSize: ATTR_OUT_SIZE,
  attrSize: ATTR_SIZE,
  slots: SLOTS,
  probes: PROBES,
};

/** The shared state: sequence numbers, [nodeId, until ms] pairs, attribute bytes, held nodes. */
interface State {
  readonly seqs: SharedArrayBuffer;
  readonly keys: SharedArrayBuffer;
  readonly attrs: SharedArrayBuffer;
  readonly held: SharedArrayBuffer;
}

/**
 * The reader-thread side: answers GETATTR of a node with a current entry (returns the reply's
 * length), else 0. Self-contained (its source is shipped to the reader worker).
 */
export function cachedAttrsFilter(state: State, k: FilterConstants): RequestFilter {
  const seqs = new Int32Array(state.seqs);
  const keys = new BigInt64Array(state.keys);
  const attrs = new Int32Array(state.attrs);
  const held = new Int32Array(state.held);
  const words = k.attrSize / 4;
  const mask = k.slots - 1;
  return (request: DataView, length: number, reply: DataView): number => {
    if (length < k.minLength || request.getUint32(k.opcodeAt, true) !== k.opcode) return 0;
    if (request.getUint32(k.lenAt, true) !== length) return 0;
    if (Atomics.load(held, request.getUint32(k.nodeIdAt, true) & (held.length - 1)) !== 0) return 0;
    const node = request.getBigInt64(k.nodeIdAt, true);
    const h = request.getUint32(k.nodeIdAt, true) & mask;
    for (let p = 0; p < k.probes; p++) {
      const i = (h + p) & mask;
      const before = Atomics.load(seqs, i);
      if ((before & 1) !== 0 || Atomics.load(keys, 2 * i) !== node) continue;
      const left = Number(Atomics.load(keys, 2 * i + 1)) - Date.now();
      if (left <= 0) return 0;
      for (let w = 0; w < words; w++) {
        reply.setInt32(k.outSize + 16 + 4 * w, Atomics.load(attrs, i * words + w), true);
      }
      if (Atomics.load(seqs, i) !== before) return 0; // rewritten meanwhile: not this copy
      reply.setUint32(k.outLenAt, k.outSize + k.attrOutSize, true);
      reply.setInt32(k.outErrorAt, 0, true);
      reply.setBigUint64(k.outUniqueAt, request.getBigUint64(k.uniqueAt, true), true);
      reply.setBigUint64(k.outSize, BigInt(Math.floor(left / 1000)), true);
      reply.setUint32(k.outSize + 8, (left % 1000) * 1_000_000, true);
      reply.setUint32(k.outSize + 12, 0, true);
      return k.outSize + k.attrOutSize;
    }
    return 0;
  };
}

/** The session-side table of stable attributes. */
export class CachedAttrs {
  /** What the device runs on its reader thread. */
  readonly filter: ReaderFilter;
  #seqs: Int32Array;
  #keys: BigInt64Array;
  /** `#keys` as 32-bit halves, probed without making BigInts (see node_rows.ts). */
  #keyHalves: Int32Array;
  #attrs: Int32Array;
  /** The buffer the last recorded attributes came from, as 32-bit words. */
  #sourceBuffer: ArrayBufferLike | undefined;
  #source: Int32Array | undefined;

  /** `held`: the nodes not to answer for (`EarlyWrites.held`; a power of two of counters). */
  constructor(held: SharedArrayBuffer = new SharedArrayBuffer(4)) {
    const state: State = {
      seqs: new SharedArrayBuffer(SLOTS * 4),
      keys: new SharedArrayBuffer(SLOTS * 16),
      attrs: new SharedArrayBuffer(SLOTS * ATTR_SIZE),
      held,
    };
    this.#seqs = new Int32Array(state.seqs);
    this.#keys = new BigInt64Array(state.keys);
    this.#keyHalves = new Int32Array(state.keys);
    this.#attrs = new Int32Array(state.attrs);
    this.filter = shipFilter(cachedAttrsFilter, state, CONSTANTS);
  }

  /**
   * GETATTR of `nodeId` is answered for `seconds` with the encoded fuse_attr at bytes
   * [at, at + ATTR_SIZE) of `bytes` (the reply being written: no copy is made to call this).
   */
  record(nodeId: bigint, bytes: Uint8Array, seconds: number, at = 0): void {
    if (!(seconds > 0) || at < 0 || bytes.length - at < ATTR_SIZE) return this.end(nodeId);
    const id = Number(nodeId);
    const now = Date.now();
    const own = rowOf(this.#keyHalves, 2, id);
    const slot = own >= 0 ? own : freeRow(this.#keyHalves, 2, id, now);
    if (slot < 0) return;
    this.#write(slot, nodeId, BigInt(Math.floor(now + seconds * 1000)), bytes, at);
  }

  /** Ends `nodeId`'s entry (it changes, or may have). */
  end(nodeId: bigint): void {
    const own = rowOf(this.#keyHalves, 2, Number(nodeId));
    if (own >= 0) this.#write(own, nodeId, 0n, undefined);
  }

  /** Rewrites slot `i` between an odd and an even sequence number. */
  #write(i: number, node: bigint, until: bigint, bytes?: Uint8Array, at = 0): void {
    Atomics.add(this.#seqs, i, 1);
    Atomics.store(this.#keys, 2 * i, node);
    Atomics.store(this.#keys, 2 * i + 1, until);
    if (bytes !== undefined) {
      const words = ATTR_SIZE / 4;
      const base = i * words;
      const start = bytes.byteOffset + at;
      if ((start & 3) === 0) {
        // Little-endian hosts (x86_64, aarch64): the words as the reply holds them.
        if (this.#sourceBuffer !== bytes.buffer) {
          this.#sourceBuffer = bytes.buffer;
          this.#source = new Int32Array(bytes.buffer, 0, bytes.buffer.byteLength >> 2);
        }
        const source = this.#source!;
        const from = start >> 2;
        for (let w = 0; w < words; w++) Atomics.store(this.#attrs, base + w, source[from + w]);
      } else {
        const view = new DataView(bytes.buffer, start, ATTR_SIZE);
        for (let w = 0; w < words; w++) {
          Atomics.store(this.#attrs, base + w, view.getInt32(4 * w, true));
        }
      }
    }
    Atomics.add(this.#seqs, i, 1);
  }
}
