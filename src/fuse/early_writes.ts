/**
 * Writes answered ahead, in one place: a WRITE through an open file the filesystem opened with
 * `Opened.writeAhead` bytes is answered on the device's reader thread (the whole length
 * written) and still handed on to the session, which gives it to the filesystem with
 * `WriteInfo.answered`.
 *
 * Why here: a write the filesystem answers as soon as it is queued (write-behind) still waits
 * for the JavaScript thread to wake up, ~0.2-0.3 ms of a small write's ~0.35 ms here; the
 * reader answers in a few µs and the JavaScript thread queues the write while the writer goes
 * on (to its close, whose FLUSH then waits for the write's result).
 *
 * Invariants:
 * - Only a write the session would take is answered: whole (its data all there), at an offset
 *   below 2^53.
 * - A handle's row holds its number and its credit: the bytes the reader may still answer
 *   ahead. The reader takes a write's bytes from the credit (compare-and-swap) before it
 *   answers; the session gives them back once the filesystem has taken the write on. A write
 *   larger than the credit, or one the kernel asks to clear set-user-ID bits with
 *   (FUSE_WRITE_KILL_SUIDGID: the filesystem must check the mode first), is handed on unanswered.
 * - Rows are set by the session at the open's answer and ended at its RELEASE, which the kernel
 *   sends only after every request on the file was answered; the session's handle numbers are
 *   never reused, so a row never serves another open.
 * - While a write answered ahead is not yet seen by the session, the reader answers no GETATTR
 *   or OPEN of its node from its caches (a cached size could predate the write): its node is
 *   counted in `held`, a table by the node id's low bits the cached attrs and opens filters
 *   check (a collision only holds back more). The session has ended those caches' entries for
 *   the node before it takes the count back (see `Session.dispatch`).
 * - The table is lossy (a taken row leaves a new open without early answers).
 *
 * Flushes with nothing to report, in the same rows: a FLUSH through a handle the filesystem
 * opened with `Opened.quietFlush` (its flush has nothing to do before a write: `close()` of a
 * `dup`ed descriptor, as a shell's `echo > file` makes before writing) is answered on the
 * reader thread and not handed on, until the first WRITE through the handle. Invariants:
 * - A row's quiet mark is set before the open's answer, so before any request through it, and
 *   cleared by every filter that sees a WRITE through it (the one run ahead, and the one among
 *   the answering filters, which io_uring ring threads run without the other) before that
 *   WRITE is answered: the kernel sends a FLUSH only after the writes before it were answered.
 * - A row ends at RELEASE (the kernel sends it once every request was answered), the mark first.
 *
 * @module
 */

import {
  FILTER_HEADER,
  type FilterHeader,
  FLUSH_IN_SIZE,
  FlushInOffset,
  FUSE_WRITE_KILL_SUIDGID,
  IN_HEADER_SIZE,
  Opcode,
  WRITE_IN_SIZE,
  WRITE_OUT_SIZE,
  WriteInOffset,
} from "./abi.ts";
import { type ReaderFilter, type RequestFilter, shipFilter } from "./device.ts";

/** Rows, direct-mapped by the handle number's low bits (a power of two). */
const SLOTS = 1 << 12;
/** Counters of the held-nodes table (a power of two). */
const HELD_SLOTS = 1 << 10;

/** What the filter needs to know of the ABI besides the headers. */
interface FilterConstants extends FilterHeader {
  readonly opcode: number;
  readonly minLength: number;
  readonly fhAt: number;
  readonly offsetAt: number;
  readonly sizeAt: number;
  readonly writeFlagsAt: number;
  readonly killSuidgid: number;
  readonly writeOutSize: number;
  readonly flushOpcode: number;
  readonly flushMinLength: number;
  readonly flushFhAt: number;
  readonly slots: number;
}

const CONSTANTS: FilterConstants = {
  ...FILTER_HEADER,
  opcode: Opcode.WRITE,
  minLength: IN_HEADER_SIZE + WRITE_IN_SIZE,
  fhAt: IN_HEADER_SIZE + WriteInOffset.FH,
  offsetAt: IN_HEADER_SIZE + WriteInOffset.OFFSET,
  sizeAt: IN_HEADER_SIZE + WriteInOffset.SIZE,
  writeFlagsAt: IN_HEADER_SIZE + WriteInOffset.WRITE_FLAGS,
  killSuidgid: FUSE_WRITE_KILL_SUIDGID,
  writeOutSize: WRITE_OUT_SIZE,
  flushOpcode: Opcode.FLUSH,
  flushMinLength: IN_HEADER_SIZE + FLUSH_IN_SIZE,
  flushFhAt: IN_HEADER_SIZE + FlushInOffset.FH,
  slots: SLOTS,
};

/**
 * The shared state: handle numbers (0: free), their credits in bytes, their quiet marks (1: a
 * FLUSH has nothing to report), the held nodes.
 */
interface State {
  readonly keys: SharedArrayBuffer;
  readonly credits: SharedArrayBuffer;
  readonly quiet: SharedArrayBuffer;
  readonly held: SharedArrayBuffer;
}

/**
 * The reader-thread side: answers a WRITE whose handle has credit for all its bytes (returns
 * the reply's length; the request must still be handed on), else 0. Self-contained (its source
 * is shipped to the reader worker).
 */
export function earlyWritesFilter(state: State, k: FilterConstants): RequestFilter {
  const keys = new BigInt64Array(state.keys);
  const credits = new Int32Array(state.credits);
  const quiet = new Int32Array(state.quiet);
  const held = new Int32Array(state.held);
  const mask = k.slots - 1;
  return (request: DataView, length: number, reply: DataView): number => {
    if (length < k.minLength || request.getUint32(k.opcodeAt, true) !== k.opcode) return 0;
    if (request.getUint32(k.lenAt, true) !== length) return 0;
    // Whatever happens to it, a write ends its handle's quiet flushes.
    const row = request.getUint32(k.fhAt, true) & mask;
    if (Atomics.load(keys, row) === request.getBigInt64(k.fhAt, true)) {
      Atomics.store(quiet, row, 0);
    }
    const size = request.getUint32(k.sizeAt, true);
    if (size > length - k.minLength) return 0;
    if ((request.getUint32(k.writeFlagsAt, true) & k.killSuidgid) !== 0) return 0;
    // An offset the session refuses (past 2^53 - 1: EFBIG) must be answered by it.
    if (request.getUint32(k.offsetAt + 4, true) >= 0x200000) return 0;
    const fh = request.getBigInt64(k.fhAt, true);
    const i = request.getUint32(k.fhAt, true) & mask;
    if (fh === 0n || Atomics.load(keys, i) !== fh) return 0;
    for (;;) {
      const credit = Atomics.load(credits, i);
      if (credit < size) return 0;
      if (Atomics.compareExchange(credits, i, credit, credit - size) === credit) break;
    }
    if (Atomics.load(keys, i) !== fh) {
      Atomics.add(credits, i, size); // ended meanwhile: not this handle's credit
      return 0;
    }
    Atomics.add(held, request.getUint32(k.nodeIdAt, true) & (held.length - 1), 1);
    reply.setUint32(k.outLenAt, k.outSize + k.writeOutSize, true);
    reply.setInt32(k.outErrorAt, 0, true);
    reply.setBigUint64(k.outUniqueAt, request.getBigUint64(k.uniqueAt, true), true);
    reply.setUint32(k.outSize, size, true);
    reply.setUint32(k.outSize + 4, 0, true);
    return k.outSize + k.writeOutSize;
  };
}

/**
 * The reader-thread side of quiet flushes: answers a FLUSH through a handle still marked quiet
 * (returns the reply's length; the request is not handed on), and ends the mark of a handle a
 * WRITE goes through. Self-contained (its source is shipped to the reader worker).
 */
export function quietFlushFilter(state: State, k: FilterConstants): RequestFilter {
  const keys = new BigInt64Array(state.keys);
  const quiet = new Int32Array(state.quiet);
  const mask = k.slots - 1;
  return (request: DataView, length: number, reply: DataView): number => {
    if (length < k.flushMinLength || request.getUint32(k.lenAt, true) !== length) return 0;
    const opcode = request.getUint32(k.opcodeAt, true);
    if (opcode === k.opcode && length >= k.minLength) {
      const row = request.getUint32(k.fhAt, true) & mask;
      if (Atomics.load(keys, row) === request.getBigInt64(k.fhAt, true)) {
        Atomics.store(quiet, row, 0);
      }
      return 0;
    }
    if (opcode !== k.flushOpcode) return 0;
    const fh = request.getBigInt64(k.flushFhAt, true);
    const row = request.getUint32(k.flushFhAt, true) & mask;
    if (fh === 0n || Atomics.load(keys, row) !== fh || Atomics.load(quiet, row) !== 1) return 0;
    reply.setUint32(k.outLenAt, k.outSize, true);
    reply.setInt32(k.outErrorAt, 0, true);
    reply.setBigUint64(k.outUniqueAt, request.getBigUint64(k.uniqueAt, true), true);
    return k.outSize;
  };
}

/** The session-side table of handles whose writes the reader may answer. */
export class EarlyWrites {
  /** What the device runs on its reader thread, handing answered requests on. */
  readonly filter: ReaderFilter;
  /** What the device runs among its answering filters (quiet flushes; not handed on). */
  readonly quietFlushes: ReaderFilter;
  /** Nodes with writes answered ahead the session has not seen: give it to the caches' filters. */
  readonly held: SharedArrayBuffer;
  #keys: BigInt64Array;
  #credits: Int32Array;
  #quiet: Int32Array;
  #held: Int32Array;

  constructor() {
    const state: State = {
      keys: new SharedArrayBuffer(SLOTS * 8),
      credits: new SharedArrayBuffer(SLOTS * 4),
      quiet: new SharedArrayBuffer(SLOTS * 4),
      held: new SharedArrayBuffer(HELD_SLOTS * 4),
    };
    this.#keys = new BigInt64Array(state.keys);
    this.#credits = new Int32Array(state.credits);
    this.#quiet = new Int32Array(state.quiet);
    this.#held = new Int32Array(state.held);
    this.held = state.held;
    this.filter = shipFilter(earlyWritesFilter, state, CONSTANTS);
    this.quietFlushes = shipFilter(quietFlushFilter, state, CONSTANTS);
  }

  /** The session has seen a write the reader answered ahead on `nodeId` (and ended its caches). */
  seen(nodeId: bigint): void {
    Atomics.sub(this.#held, Number(BigInt.asUintN(32, nodeId)) & (HELD_SLOTS - 1), 1);
  }

  /**
   * Writes through handle `fh` may be answered ahead, up to `bytes` at a time, and with `quiet`
   * its flushes until its first write; false: not (the row is another handle's). Before the
   * open's answer.
   */
  grant(fh: bigint, bytes: number, quiet = false): boolean {
    const i = this.#row(fh);
    const key = BigInt.asIntN(64, fh);
    const held = Atomics.load(this.#keys, i);
    if (held !== 0n && held !== key) return false;
    const credit = Math.max(0, Math.min(0x7fffffff, Math.floor(bytes)));
    Atomics.store(this.#credits, i, 0);
    Atomics.store(this.#quiet, i, quiet ? 1 : 0);
    Atomics.store(this.#keys, i, key);
    Atomics.store(this.#credits, i, credit);
    return true;
  }

  /** A write of `bytes` answered ahead through `fh` was taken on: its credit comes back. */
  refund(fh: bigint, bytes: number): void {
    const i = this.#row(fh);
    if (Atomics.load(this.#keys, i) === BigInt.asIntN(64, fh)) Atomics.add(this.#credits, i, bytes);
  }

  /**
   * Ends `fh`'s row (its RELEASE, or an open whose answer did not reach the kernel): credit and
   * quiet mark first, so the reader never takes stale ones.
   */
  end(fh: bigint): void {
    const i = this.#row(fh);
    if (Atomics.load(this.#keys, i) !== BigInt.asIntN(64, fh)) return;
    Atomics.store(this.#credits, i, 0);
    Atomics.store(this.#quiet, i, 0);
    Atomics.store(this.#keys, i, 0n);
  }

  /** Whether a FLUSH through `fh` would be answered on the reader thread. */
  quiet(fh: bigint): boolean {
    const i = this.#row(fh);
    return Atomics.load(this.#keys, i) === BigInt.asIntN(64, fh) &&
      Atomics.load(this.#quiet, i) === 1;
  }

  /** Bytes the reader may still answer for `fh` (0 without a row). */
  credit(fh: bigint): number {
    const i = this.#row(fh);
    return Atomics.load(this.#keys, i) === BigInt.asIntN(64, fh)
      ? Atomics.load(this.#credits, i)
      : 0;
  }

  #row(fh: bigint): number {
    return Number(BigInt.asUintN(32, fh)) & (SLOTS - 1);
  }
}
