/**
 * The job ring shared by the satellite's main thread and its I/O worker (satellite/workers.ts,
 * satellite/io_worker.ts): one SharedArrayBuffer holding a control block, {@link SLOTS} job
 * slots and one data area per slot.
 *
 * Invariants:
 * - Only the main thread writes a slot's job and bumps SUBMITTED; only the worker writes a
 *   slot's result and data and bumps COMPLETED. Jobs complete in submission order.
 * - A slot is reused only after the main thread has consumed its completion (so the data
 *   area of a completed read stays valid until its reply frame is written out).
 * - Counters are int32 sequence numbers compared for equality only (they may wrap).
 *
 * @module
 */

// methods.ts only: the worker's bundle must not pull in msgpackr (src/protocol/mod.ts does).
import { MAX_IO_BYTES } from "../src/protocol/methods.ts";

/** Job slots (a power of two): one running, one ready behind it. */
export const SLOTS = 2;

/** Int32 indices of the control block. */
export const SUBMITTED = 0;
export const COMPLETED = 1;
const CONTROL_BYTES = 16;

/** Job kinds. */
export const Op = {
  /** pread of a[1] bytes at a[0] into the data area (at DATA_OFFSET), to the end or EOF. */
  PREAD: 1,
  /** fsync, or fdatasync when a[0] is 1. */
  FSYNC: 2,
  /** fallocate(fd, a[0] mode, a[1] offset, a[2] length). */
  FALLOCATE: 3,
  /** copy_file_range(fd, &a[0], fd2, &a[1], a[2] length, a[3] flags). */
  COPY_FILE_RANGE: 4,
} as const;

/** BigInt64 fields of a slot: op, fd, fd2, four arguments, result (bytes or -errno). */
export const F_OP = 0;
export const F_FD = 1;
export const F_FD2 = 2;
export const F_ARG = 3; // F_ARG .. F_ARG + 3
export const F_RESULT = 7;
const SLOT_FIELDS = 8;
const SLOT_BYTES = SLOT_FIELDS * 8;

/**
 * Where a read's payload starts in a data area: room before it for the reply's frame header,
 * so the reply is sent from the data area as it is (see BytesReply).
 */
export const DATA_OFFSET = 16; // = BytesReply.bytesFor(0), checked in workers_test.ts
/** Bytes of one slot's data area. */
export const DATA_BYTES = DATA_OFFSET + MAX_IO_BYTES;

/** Bytes of the whole ring. */
export const RING_BYTES = CONTROL_BYTES + SLOTS * SLOT_BYTES + SLOTS * DATA_BYTES;

/** Typed views of a ring. */
export interface RingViews {
  readonly control: Int32Array;
  /** Fields of slot `s` (SLOT_FIELDS each). */
  fields(slot: number): BigInt64Array;
  /** Data area of slot `s` (DATA_BYTES). */
  data(slot: number): Uint8Array;
}

/** Views over `sab` (RING_BYTES long). */
export function ringViews(sab: SharedArrayBuffer): RingViews {
  const fields = Array.from(
    { length: SLOTS },
    (_, s) => new BigInt64Array(sab, CONTROL_BYTES + s * SLOT_BYTES, SLOT_FIELDS),
  );
  const data = Array.from(
    { length: SLOTS },
    (_, s) => new Uint8Array(sab, CONTROL_BYTES + SLOTS * SLOT_BYTES + s * DATA_BYTES, DATA_BYTES),
  );
  return {
    control: new Int32Array(sab, 0, CONTROL_BYTES / 4),
    fields: (s) => fields[s],
    data: (s) => data[s],
  };
}

/** The slot of sequence number `seq`. */
export function slotOf(seq: number): number {
  return seq & (SLOTS - 1);
}
