/**
 * FUSE over io_uring (Linux 6.14+, module parameter `fuse.enable_uring`): the kernel hands each
 * request to a ring of the CPU the calling process runs on. One thread per CPU, pinned to it,
 * waits on that CPU's ring; so the process and the thread that serves it share a CPU, and a
 * request answered from the caches (a warm `grep -r` opens every file) costs no wake-up of
 * another CPU. On /dev/fuse a request wakes the reader wherever it slept.
 *
 * Invariants:
 * - /dev/fuse stays served by the wrapped device: INIT, FORGET, INTERRUPT, requests sent before
 *   the rings are ready, and notifications written by the session. A FORGET the kernel sends as
 *   a request (after a READDIRPLUS entry it could not link) comes through a ring and gets an
 *   empty commit, or its sender waits forever.
 * - Only a ring's own thread submits to it (the kernel runs a fetch's delivery as task work of
 *   the submitter): replies made on the JS thread are left in the entry and the thread is woken
 *   through its eventfd to commit them.
 * - An entry goes kernel → ring thread → (filter answer, or JS thread → reply) → commit →
 *   kernel. The JS thread writes an entry's reply only after the session released the request
 *   (before, the reply waits in a copy): request and reply share the payload buffer.
 * - The rings are set up before INIT is answered and register only after: a FUSE connection
 *   that agreed to io_uring blocks new requests until every CPU's ring is registered, so the
 *   session asks for it only when `uringCpus` made a ring here.
 *
 * @module
 */

import {
  CQE_SIZE,
  CqRingOffset,
  EFD_CLOEXEC,
  ERRNO,
  IO_URING_PARAMS_SIZE,
  IORING_ENTER_GETEVENTS,
  IORING_FEAT_SINGLE_MMAP,
  IORING_OFF_CQ_RING,
  IORING_OFF_SQ_RING,
  IORING_OFF_SQES,
  IORING_OP_READ,
  IORING_OP_URING_CMD,
  IORING_SETUP_CQSIZE,
  IORING_SETUP_SQE128,
  IoUringParams,
  MAP_POPULATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
  SCHED_BATCH,
  SQE128_SIZE,
  SqeOffset,
  SqRingOffset,
  SYS_IO_URING_ENTER,
  SYS_IO_URING_SETUP,
} from "../linux/mod.ts";
import {
  encodeOutHeader,
  IN_HEADER_SIZE,
  InitFlag,
  Opcode,
  OUT_HEADER_SIZE,
  URING_HEADER_SIZE,
  URING_OP_IN_OFFSET,
  URING_OP_IN_SIZE,
  URING_PAYLOAD_SZ_OFFSET,
  UringCmd,
  UringCmdOffset,
} from "./abi.ts";
import {
  type Device,
  type DeviceSink,
  FAILED_READ_RETRIES,
  FILTER_REPLY_MAX,
  joinReply,
  type RequestBuffer,
} from "./device.ts";
import { errno, libc } from "./libc.ts";

/** Where the kernel's switch for FUSE over io_uring is. */
export const ENABLE_URING_PARAMETER = "/sys/module/fuse/parameters/enable_uring";
/** Most CPUs served by rings (each a thread and `depth` entries of max_write). */
export const MAX_URING_CPUS = 32;
/**
 * Entries per ring: a request holds its entry until answered, and a CPU's requests wait for one
 * of its entries, so this bounds what is in flight per CPU. With 8, `stat` + `ls /usr/bin` while
 * `cat` streams 256 MiB took 38–59 ms (reads held every entry); with 32, 6–13 ms. Each entry's
 * payload buffer is max_write (1 MiB) of shared memory, touched as replies fill it.
 */
export const DEFAULT_RING_DEPTH = 32;

// Control words (Int32Array at the start of the shared buffer).
const CTRL_FILLED = 0; // requests handed to the JS thread (ring threads → JS)
const CTRL_GO = 1; // 0 wait, 1 register, -1 stop (JS → ring threads)
const CTRL_REGISTERED = 2; // ring threads that registered their entries
const CTRL_FAILED = 3; // ring threads that failed (their errno in CTRL_ERRNO)
const CTRL_ERRNO = 4;
const CTRL_LOST = 5; // entries the kernel ended with an error while serving (ring threads → JS)
const CTRL_LOST_ERRNO = 6; // the last such error
const CTRL_ENTRIES = 8;
const ENTRY_WORDS = 4; // state, request start, request length, sequence
// Entry states.
const WITH_KERNEL = 0; // registered, or being read by its ring thread
const FILLED = 1; // a request for the JS thread
const TAKEN = 2; // the session has it
const REPLIED = 3; // its reply is in the entry: the ring thread commits it

/** Payload buffers start this far into an entry's slot: the header and op_in go before it. */
const PAYLOAD_AT = 256;

/** The number of rings FUSE over io_uring needs here (one per possible CPU), or why it cannot be
 * used. */
export function uringCpus(
  readParameter: () => string | undefined,
  readCpus?: (path: string) => string,
): number | string {
  const enabled = readParameter();
  if (enabled === undefined) return "this kernel has no FUSE over io_uring";
  if (enabled.trim() !== "Y") return `${ENABLE_URING_PARAMETER} is ${enabled.trim()}`;
  const cpus = possibleCpus(readCpus);
  if (cpus === undefined) return "cannot read the possible CPUs";
  if (cpus > MAX_URING_CPUS) return `${cpus} CPUs (rings serve at most ${MAX_URING_CPUS})`;
  const params = new Uint8Array(IO_URING_PARAMS_SIZE);
  new DataView(params.buffer).setUint32(IoUringParams.FLAGS, IORING_SETUP_SQE128, true);
  const fd = Number(libc().syscall_setup(BigInt(SYS_IO_URING_SETUP), 2, params));
  if (fd < 0) return `io_uring_setup failed (errno ${errno()})`;
  libc().close(fd);
  return cpus;
}

/** Number of possible CPUs (the kernel makes a ring queue for each), from sysfs. */
export function possibleCpus(
  read = (p: string): string => Deno.readTextFileSync(p),
): number | undefined {
  let text: string;
  try {
    text = read("/sys/devices/system/cpu/possible").trim();
  } catch {
    return undefined;
  }
  let max = -1;
  for (const part of text.split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return undefined;
    max = Math.max(max, Number(m[2] ?? m[1]));
  }
  return max >= 0 ? max + 1 : undefined;
}

/** What a ring thread is given (structured-cloneable). */
interface RingInit {
  sab: SharedArrayBuffer;
  qid: number;
  fuseFd: number;
  eventFd: number;
  depth: number;
  slotSize: number;
  slotsOffset: number;
  headersOffset: number;
  payloadSize: number;
  filterSource: string | undefined;
  filterState: unknown;
}

/** Layout and ABI numbers the ring thread's self-contained code uses. */
const RING_CONSTANTS = {
  ENTER_RETRIES: FAILED_READ_RETRIES,
  CTRL_FILLED,
  CTRL_GO,
  CTRL_REGISTERED,
  CTRL_FAILED,
  CTRL_ERRNO,
  CTRL_LOST,
  CTRL_LOST_ERRNO,
  CTRL_ENTRIES,
  ENTRY_WORDS,
  WITH_KERNEL,
  FILLED,
  REPLIED,
  PAYLOAD_AT,
  IOVEC_AT: 320,
  EVENT_AT: 384,
  IN_HEADER_SIZE,
  OUT_HEADER_SIZE,
  URING_HEADER_SIZE,
  URING_OP_IN_OFFSET,
  URING_OP_IN_SIZE,
  URING_PAYLOAD_SZ_OFFSET,
  REGISTER: UringCmd.REGISTER,
  COMMIT: UringCmd.COMMIT_AND_FETCH,
  CMD_COMMIT_ID: UringCmdOffset.COMMIT_ID,
  CMD_QID: UringCmdOffset.QID,
  IO_URING_PARAMS_SIZE,
  PARAMS: IoUringParams,
  SETUP_FLAGS: IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE,
  FEAT_SINGLE_MMAP: IORING_FEAT_SINGLE_MMAP,
  ENTER_GETEVENTS: IORING_ENTER_GETEVENTS,
  OP_READ: IORING_OP_READ,
  OP_URING_CMD: IORING_OP_URING_CMD,
  OFF_SQ_RING: IORING_OFF_SQ_RING,
  OFF_CQ_RING: IORING_OFF_CQ_RING,
  OFF_SQES: IORING_OFF_SQES,
  SQE: SqeOffset,
  SQ: SqRingOffset,
  CQ: CqRingOffset,
  CQE_SIZE,
  SQE_SIZE: SQE128_SIZE,
  PROT: PROT_READ | PROT_WRITE,
  MAP: MAP_SHARED | MAP_POPULATE,
  SCHED_BATCH,
  SYS_SETUP: SYS_IO_URING_SETUP,
  SYS_ENTER: SYS_IO_URING_ENTER,
  EINTR: ERRNO.EINTR,
  EIO: ERRNO.EIO,
  ENOTCONN: ERRNO.ENOTCONN,
  FILTER_REPLY_MAX,
};

/**
 * A ring thread's whole life (shipped as source: it uses only its arguments and globals).
 * Sets up the CPU's ring, waits for the go, registers its entries, then serves: each request
 * is answered by the filter or handed to the JS thread; replies the JS thread left are
 * committed when the eventfd says so.
 */
function ringThread(init: RingInit, K: typeof RING_CONSTANTS): void {
  const lib = Deno.dlopen("libc.so.6", {
    setup: { name: "syscall", parameters: ["i64", "u32", "buffer"], result: "i64" },
    enter: {
      name: "syscall",
      parameters: ["i64", "i32", "u32", "u32", "u32", "pointer", "usize"],
      result: "i64",
    },
    mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
    munmap: { parameters: ["pointer", "usize"], result: "i32" },
    close: { parameters: ["i32"], result: "i32" },
    sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
    sched_setscheduler: { parameters: ["i32", "i32", "buffer"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  }).symbols;
  // Read without allocating (a collection in between may set errno); the address is fixed.
  const errnoView = new Deno.UnsafePointerView(lib.__errno_location()!);
  const errno = (): number => errnoView.getInt32(0);
  const first = init.qid * init.depth;
  // The control words, then each entry's (this ring's are the last `depth`).
  const ctrl = new Int32Array(init.sab, 0, K.CTRL_ENTRIES + (first + init.depth) * K.ENTRY_WORDS);
  const fail = (e: number): void => {
    Atomics.store(ctrl, K.CTRL_ERRNO, e);
    Atomics.add(ctrl, K.CTRL_FAILED, 1);
    Atomics.notify(ctrl, K.CTRL_FAILED);
  };
  // Pinned to its CPU: the kernel queues a process's requests on the ring of its CPU.
  const mask = new Uint8Array(Math.max(8, Math.ceil((init.qid + 1) / 64) * 8));
  mask[init.qid >> 3] = 1 << (init.qid & 7);
  lib.sched_setaffinity(0, BigInt(mask.length), mask);
  // SCHED_BATCH: woken by a request the process does not wait for (RELEASE), the thread does
  // not preempt that process on their shared CPU; it runs when the process waits (an OPEN).
  lib.sched_setscheduler(0, K.SCHED_BATCH, new Uint8Array(4));

  const entries = init.depth + 1; // the entries, and the eventfd's read
  const params = new Uint8Array(K.IO_URING_PARAMS_SIZE);
  const pv = new DataView(params.buffer);
  pv.setUint32(K.PARAMS.FLAGS, K.SETUP_FLAGS, true);
  pv.setUint32(K.PARAMS.CQ_ENTRIES, entries * 2, true);
  const ringFd = Number(lib.setup(BigInt(K.SYS_SETUP), entries, params));
  if (ringFd < 0) return fail(errno());
  const sqEntries = pv.getUint32(K.PARAMS.SQ_ENTRIES, true);
  const cqEntries = pv.getUint32(K.PARAMS.CQ_ENTRIES, true);
  const sqOff = (i: number): number => pv.getUint32(K.PARAMS.SQ_OFF + i, true);
  const cqOff = (i: number): number => pv.getUint32(K.PARAMS.CQ_OFF + i, true);
  const sqSize = sqOff(K.SQ.ARRAY) + sqEntries * 4;
  const cqSize = cqOff(K.CQ.CQES) + cqEntries * K.CQE_SIZE;
  const single = (pv.getUint32(K.PARAMS.FEATURES, true) & K.FEAT_SINGLE_MMAP) !== 0;
  const map = (size: number, off: number): Deno.PointerValue => {
    const p = lib.mmap(null, BigInt(size), K.PROT, K.MAP, ringFd, BigInt(off));
    return p === null || Deno.UnsafePointer.value(p) === -1n ? null : p;
  };
  const sqPtr = map(single ? Math.max(sqSize, cqSize) : sqSize, K.OFF_SQ_RING);
  const cqPtr = single ? sqPtr : map(cqSize, K.OFF_CQ_RING);
  const sqePtr = map(sqEntries * K.SQE_SIZE, K.OFF_SQES);
  if (sqPtr === null || cqPtr === null || sqePtr === null) {
    fail(errno());
    lib.close(ringFd);
    return;
  }
  const sqBuf = Deno.UnsafePointerView.getArrayBuffer(
    sqPtr,
    single ? Math.max(sqSize, cqSize) : sqSize,
  );
  const cqBuf = single ? sqBuf : Deno.UnsafePointerView.getArrayBuffer(cqPtr, cqSize);
  const sqWords = new Uint32Array(sqBuf);
  const cqWords = new Uint32Array(cqBuf);
  const cqView = new DataView(cqBuf);
  const sqes = new DataView(Deno.UnsafePointerView.getArrayBuffer(sqePtr, sqEntries * K.SQE_SIZE));
  const sqMask = sqWords[sqOff(K.SQ.RING_MASK) >> 2];
  const cqMask = cqWords[cqOff(K.CQ.RING_MASK) >> 2];
  const sqTailAt = sqOff(K.SQ.TAIL) >> 2, sqArrayAt = sqOff(K.SQ.ARRAY) >> 2;
  const cqHeadAt = cqOff(K.CQ.HEAD) >> 2, cqTailAt = cqOff(K.CQ.TAIL) >> 2;
  const cqesAt = cqOff(K.CQ.CQES);
  let sqTail = Atomics.load(sqWords, sqTailAt);
  let toSubmit = 0;

  const sab = init.sab;
  const u8 = new Uint8Array(sab);
  const ptrOf = (offset: number, length: number): bigint =>
    BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(new Uint8Array(sab, offset, length))));
  const headerAt = (e: number): number => init.headersOffset + (first + e) * 512;
  const slotAt = (e: number): number => init.slotsOffset + (first + e) * init.slotSize;
  // Everything the kernel reads or writes by address lives in the shared buffer, whose memory
  // never moves (small typed arrays live in V8's heap, which the collector compacts): after its
  // header, each entry's slot of 512 bytes holds its iovec pair, the first one the eventfd's
  // counter too.
  const headers: DataView[] = [];
  const iovecPtrs: bigint[] = [];
  for (let e = 0; e < init.depth; e++) {
    headers.push(new DataView(sab, headerAt(e), K.URING_HEADER_SIZE));
    const iov = new BigUint64Array(sab, headerAt(e) + K.IOVEC_AT, 4);
    iov[0] = ptrOf(headerAt(e), K.URING_HEADER_SIZE);
    iov[1] = BigInt(K.URING_HEADER_SIZE);
    iov[2] = ptrOf(slotAt(e) + K.PAYLOAD_AT, init.payloadSize);
    iov[3] = BigInt(init.payloadSize);
    iovecPtrs.push(ptrOf(headerAt(e) + K.IOVEC_AT, 32));
  }
  const evPtr = ptrOf(headerAt(0) + K.EVENT_AT, 8);
  const EVENT = BigInt(init.depth);

  const sqe = (): number => {
    const idx = sqTail & sqMask;
    const o = idx * K.SQE_SIZE;
    for (let i = 0; i < K.SQE_SIZE; i += 8) sqes.setBigUint64(o + i, 0n, true);
    sqWords[sqArrayAt + idx] = idx;
    sqTail = (sqTail + 1) >>> 0;
    toSubmit++;
    return o;
  };
  const uringCmd = (e: number, op: number, commitId: bigint): void => {
    const o = sqe();
    sqes.setUint8(o + K.SQE.OPCODE, K.OP_URING_CMD);
    sqes.setInt32(o + K.SQE.FD, init.fuseFd, true);
    sqes.setUint32(o + K.SQE.OFF, op, true);
    if (op === K.REGISTER) {
      sqes.setBigUint64(o + K.SQE.ADDR, iovecPtrs[e], true);
      sqes.setUint32(o + K.SQE.LEN, 2, true);
    }
    sqes.setBigUint64(o + K.SQE.USER_DATA, BigInt(e), true);
    sqes.setBigUint64(o + K.SQE.CMD + K.CMD_COMMIT_ID, commitId, true);
    sqes.setUint16(o + K.SQE.CMD + K.CMD_QID, init.qid, true);
  };
  const readEvent = (): void => {
    const o = sqe();
    sqes.setUint8(o + K.SQE.OPCODE, K.OP_READ);
    sqes.setInt32(o + K.SQE.FD, init.eventFd, true);
    sqes.setBigUint64(o + K.SQE.ADDR, evPtr, true);
    sqes.setUint32(o + K.SQE.LEN, 8, true);
    sqes.setBigUint64(o + K.SQE.USER_DATA, EVENT, true);
  };
  const enter = (wait: boolean): number => {
    Atomics.store(sqWords, sqTailAt, sqTail);
    const n = toSubmit;
    const r = Number(
      lib.enter(
        BigInt(K.SYS_ENTER),
        ringFd,
        n,
        wait ? 1 : 0,
        wait ? K.ENTER_GETEVENTS : 0,
        null,
        0n,
      ),
    );
    if (r >= 0) toSubmit -= Math.min(r, n);
    return r < 0 ? -errno() : r;
  };

  const filter = init.filterSource
    ? new Function("return (" + init.filterSource + ");")()(init.filterState)
    : null;
  const reply = new Uint8Array(K.FILTER_REPLY_MAX);
  const replyView = new DataView(reply.buffer);
  const commitReply = (e: number, unique: bigint): void => uringCmd(e, K.COMMIT, unique);
  let seq = 0;
  const serve = (e: number): void => {
    const h = headers[e];
    const len = h.getUint32(0, true);
    const unique = h.getBigUint64(8, true);
    const payload = h.getUint32(K.URING_PAYLOAD_SZ_OFFSET, true);
    const opIn = len - K.IN_HEADER_SIZE - payload;
    const slot = slotAt(e);
    if (opIn < 0 || opIn > K.URING_OP_IN_SIZE || payload > init.payloadSize) {
      // Not a request this layout can hold: answered EIO.
      h.setInt32(4, -K.EIO, true);
      h.setUint32(K.URING_PAYLOAD_SZ_OFFSET, 0, true);
      return commitReply(e, unique);
    }
    // The request made whole, as /dev/fuse gives it: header, op_in, then the payload in place.
    const start = slot + K.PAYLOAD_AT - opIn - K.IN_HEADER_SIZE;
    u8.copyWithin(start, headerAt(e), headerAt(e) + K.IN_HEADER_SIZE);
    u8.copyWithin(
      start + K.IN_HEADER_SIZE,
      headerAt(e) + K.URING_OP_IN_OFFSET,
      headerAt(e) + K.URING_OP_IN_OFFSET + opIn,
    );
    if (filter !== null) {
      let r = 0;
      try {
        r = filter(new DataView(sab, start, len), len, replyView);
      } catch {
        r = 0;
      }
      if (r >= K.OUT_HEADER_SIZE && r <= K.FILTER_REPLY_MAX) {
        h.setInt32(4, replyView.getInt32(4, true), true);
        h.setBigUint64(8, unique, true);
        u8.set(reply.subarray(K.OUT_HEADER_SIZE, r), slot + K.PAYLOAD_AT);
        h.setUint32(K.URING_PAYLOAD_SZ_OFFSET, r - K.OUT_HEADER_SIZE, true);
        return commitReply(e, unique);
      }
    }
    const base = K.CTRL_ENTRIES + (first + e) * K.ENTRY_WORDS;
    ctrl[base + 1] = start;
    ctrl[base + 2] = len;
    ctrl[base + 3] = ++seq;
    Atomics.store(ctrl, base, K.FILLED);
    Atomics.add(ctrl, K.CTRL_FILLED, 1);
    Atomics.notify(ctrl, K.CTRL_FILLED);
  };
  const commitReplied = (): void => {
    for (let e = 0; e < init.depth; e++) {
      const base = K.CTRL_ENTRIES + (first + e) * K.ENTRY_WORDS;
      if (Atomics.load(ctrl, base) !== K.REPLIED) continue;
      Atomics.store(ctrl, base, K.WITH_KERNEL);
      uringCmd(e, K.COMMIT, headers[e].getBigUint64(8, true));
    }
  };

  // Wait for INIT's answer (REGISTER before it is refused), or for the end.
  while (Atomics.load(ctrl, K.CTRL_GO) === 0) Atomics.wait(ctrl, K.CTRL_GO, 0, 1000);
  let live = Atomics.load(ctrl, K.CTRL_GO) === 1;
  if (live) {
    for (let e = 0; e < init.depth; e++) uringCmd(e, K.REGISTER, 0n);
    readEvent();
    const r = enter(false);
    if (r < 0) {
      fail(-r);
      live = false;
    } else {
      Atomics.add(ctrl, K.CTRL_REGISTERED, 1);
      Atomics.notify(ctrl, K.CTRL_REGISTERED);
    }
  }
  let armed = live ? init.depth : 0;
  // A failed wait is retried a while (1 ms apart) before the thread gives up: the errno seen may
  // be another than the call's (the runtime's own calls can overwrite it), and the kernel ends
  // the entries of a connection that is gone, which ends this loop anyway.
  const nap = new Int32Array(new SharedArrayBuffer(4));
  let failures = 0;
  while (live && armed > 0) {
    const r = enter(true);
    if (r < 0 && r !== -K.EINTR) {
      if (++failures >= K.ENTER_RETRIES || Atomics.load(ctrl, K.CTRL_GO) !== 1) break;
      Atomics.wait(nap, 0, 0, 1);
      continue;
    }
    failures = 0;
    let head = Atomics.load(cqWords, cqHeadAt);
    const tail = Atomics.load(cqWords, cqTailAt);
    while (head !== tail) {
      const o = cqesAt + (head & cqMask) * K.CQE_SIZE;
      const data = cqView.getBigUint64(o, true);
      const res = cqView.getInt32(o + 8, true);
      head = (head + 1) >>> 0;
      if (data === EVENT) {
        if (Atomics.load(ctrl, K.CTRL_GO) !== 1) live = false;
        commitReplied();
        readEvent();
      } else if (res < 0) {
        armed--; // the connection ended (ENOTCONN), or the entry was cancelled
        if (res !== -K.ENOTCONN && Atomics.load(ctrl, K.CTRL_GO) === 1) {
          Atomics.store(ctrl, K.CTRL_LOST_ERRNO, -res);
          Atomics.add(ctrl, K.CTRL_LOST, 1);
          Atomics.add(ctrl, K.CTRL_FILLED, 1); // wakes the JS thread, which logs it
          Atomics.notify(ctrl, K.CTRL_FILLED);
        }
      } else {
        serve(Number(data));
      }
    }
    Atomics.store(cqWords, cqHeadAt, head);
  }
  lib.munmap(sqePtr, BigInt(sqEntries * K.SQE_SIZE));
  if (!single) lib.munmap(cqPtr, BigInt(cqSize));
  lib.munmap(sqPtr, BigInt(single ? Math.max(sqSize, cqSize) : sqSize));
  lib.close(ringFd);
}

/** A ring entry as the JS thread tracks it. */
interface Entry {
  readonly qid: number;
  readonly header: DataView;
  readonly payload: Uint8Array;
  /** Where its slot ends in the shared buffer (a request handed over runs from its start to here). */
  readonly slotEnd: number;
  /** The session released the request (its reply may go into the payload). */
  released: boolean;
  /** A reply made before the release (copied out of the session's buffers). */
  pending: Uint8Array | undefined;
}

/**
 * A device serving requests through per-CPU io_uring rings once INIT agreed to it, and through
 * the wrapped /dev/fuse device otherwise (and always for what the ring does not carry).
 */
export class UringDevice implements Device {
  readonly initFlags: bigint = InitFlag.OVER_IO_URING | InitFlag.INIT_EXT;
  readonly #inner: Device;
  readonly #fd: number;
  readonly #cpus: number;
  readonly #depth: number;
  readonly #payloadSize: number;
  readonly #log: (message: string) => void;
  #sab: SharedArrayBuffer | undefined;
  #ctrl: Int32Array | undefined;
  #entries: Entry[] = [];
  #eventFds: number[] = [];
  /** Ring requests the session holds, by unique. */
  #byUnique = new Map<bigint, number>();
  #event = new BigUint64Array([1n]);
  readonly #noReplyBytes = new Uint8Array(OUT_HEADER_SIZE);
  readonly #noReply = new DataView(this.#noReplyBytes.buffer);
  #sink: DeviceSink | undefined;
  #closed = false;
  /** Requests the rings handed to the session (for tests and diagnostics). */
  ringRequests = 0;
  /** Set when the rings registered (INIT agreed and every CPU's ring took its entries). */
  ready = false;

  /** `payloadSize`: uringPayloadSize of the session's max_write and max_pages. */
  constructor(
    inner: Device,
    fd: number,
    options: { cpus: number; depth?: number; payloadSize: number; log?: (m: string) => void },
  ) {
    this.#inner = inner;
    this.#fd = fd;
    this.#cpus = options.cpus;
    this.#depth = Math.max(2, Math.min(64, options.depth ?? DEFAULT_RING_DEPTH));
    this.#payloadSize = options.payloadSize;
    this.#log = options.log ?? (() => {});
  }

  start(sink: DeviceSink): void {
    if (this.#sink) return;
    this.#sink = sink;
    this.#inner.start(sink);
    const total = this.#cpus * this.#depth;
    const ctrlBytes = (CTRL_ENTRIES + total * ENTRY_WORDS) * 4;
    const headersOffset = Math.ceil(ctrlBytes / 4096) * 4096;
    const slotsOffset = headersOffset + Math.ceil(total * 512 / 4096) * 4096;
    const slotSize = Math.ceil((PAYLOAD_AT + this.#payloadSize) / 4096) * 4096;
    const sab = new SharedArrayBuffer(slotsOffset + total * slotSize);
    this.#sab = sab;
    this.#ctrl = new Int32Array(sab, 0, CTRL_ENTRIES + total * ENTRY_WORDS);
    for (let i = 0; i < total; i++) {
      this.#entries.push({
        qid: Math.floor(i / this.#depth),
        header: new DataView(sab, headersOffset + i * 512, URING_HEADER_SIZE),
        payload: new Uint8Array(sab, slotsOffset + i * slotSize + PAYLOAD_AT, this.#payloadSize),
        slotEnd: slotsOffset + (i + 1) * slotSize,
        released: false,
        pending: undefined,
      });
    }
    const source =
      `self.onmessage = (event) => { self.onmessage = null; (${ringThread.toString()})` +
      `(event.data, ${JSON.stringify(RING_CONSTANTS)}); self.close(); };`;
    const url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
    try {
      for (let qid = 0; qid < this.#cpus; qid++) {
        const efd = libc().eventfd(0, EFD_CLOEXEC);
        if (efd < 0) throw new Error(`eventfd failed (errno ${errno()})`);
        this.#eventFds.push(efd);
        const worker = new Worker(url, { type: "module" });
        const init: RingInit = {
          sab,
          qid,
          fuseFd: this.#fd,
          eventFd: efd,
          depth: this.#depth,
          slotSize,
          slotsOffset,
          headersOffset,
          payloadSize: this.#payloadSize,
          filterSource: sink.filter?.source,
          filterState: sink.filter?.state,
        };
        worker.postMessage(init);
      }
    } finally {
      URL.revokeObjectURL(url);
    }
    this.#pump().catch((error) => {
      this.#log(`FUSE ring pump failed: ${error}`);
    });
  }

  /** INIT was answered with `flags`: the rings register if the kernel agreed. */
  initialized(flags: bigint): void {
    const ctrl = this.#ctrl;
    if (!ctrl) return;
    const agreed = (flags & InitFlag.OVER_IO_URING) !== 0n;
    Atomics.store(ctrl, CTRL_GO, agreed ? 1 : -1);
    Atomics.notify(ctrl, CTRL_GO);
  }

  /** Resolves once every ring registered (true) or one failed (false). */
  async registered(timeoutMs = 5000): Promise<boolean> {
    const ctrl = this.#ctrl;
    if (!ctrl) return false;
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (Atomics.load(ctrl, CTRL_FAILED) > 0) return false;
      if (Atomics.load(ctrl, CTRL_REGISTERED) === this.#cpus) return this.ready = true;
      if (Atomics.load(ctrl, CTRL_GO) === -1 || Date.now() > until) return false;
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** The errno a failed ring thread reported (0 if none). */
  get failure(): number {
    return this.#ctrl ? Atomics.load(this.#ctrl, CTRL_ERRNO) : 0;
  }

  async #pump(): Promise<void> {
    const ctrl = this.#ctrl!, sab = this.#sab!;
    let seen = Atomics.load(ctrl, CTRL_FILLED);
    let lost = 0;
    while (!this.#closed) {
      if (Atomics.load(ctrl, CTRL_LOST) !== lost) {
        lost = Atomics.load(ctrl, CTRL_LOST);
        this.#log(
          `FUSE ring: the kernel ended ${lost} of ${this.#entries.length} entries ` +
            `(last errno ${Atomics.load(ctrl, CTRL_LOST_ERRNO)})`,
        );
      }
      for (let i = 0; i < this.#entries.length; i++) {
        const base = CTRL_ENTRIES + i * ENTRY_WORDS;
        if (Atomics.load(ctrl, base) !== FILLED) continue;
        Atomics.store(ctrl, base, TAKEN);
        const start = ctrl[base + 1], length = ctrl[base + 2];
        const entry = this.#entries[i];
        entry.released = false;
        entry.pending = undefined;
        const size = entry.slotEnd - start;
        const buffer: RequestBuffer = {
          bytes: new Uint8Array(sab, start, size),
          view: new DataView(sab, start, size),
          release: () => this.#release(i),
        };
        const unique = entry.header.getBigUint64(8, true);
        const opcode = entry.header.getUint32(4, true);
        this.#byUnique.set(unique, i);
        this.ringRequests++;
        this.#sink!.request(buffer, length);
        if (
          (opcode === Opcode.FORGET || opcode === Opcode.BATCH_FORGET) && this.#byUnique.has(unique)
        ) {
          // A FORGET the kernel sent as a request (readdirplus could not link an entry) waits
          // for its entry's commit, where /dev/fuse ends it when read: committed empty.
          encodeOutHeader(this.#noReply, OUT_HEADER_SIZE, 0, unique);
          this.write([this.#noReplyBytes], OUT_HEADER_SIZE);
        }
      }
      const r = Atomics.waitAsync(ctrl, CTRL_FILLED, seen);
      if (r.async) await r.value;
      seen = Atomics.load(ctrl, CTRL_FILLED);
    }
  }

  #release(i: number): void {
    const entry = this.#entries[i];
    if (entry.released) return;
    entry.released = true;
    const pending = entry.pending;
    if (pending === undefined) return;
    entry.pending = undefined;
    this.#commit(i, [pending], pending.length);
  }

  write(parts: Uint8Array[], total: number): number {
    const head = parts[0];
    if (head === undefined || head.length < OUT_HEADER_SIZE || this.#byUnique.size === 0) {
      return this.#inner.write(parts, total);
    }
    const unique = new DataView(head.buffer, head.byteOffset, OUT_HEADER_SIZE).getBigUint64(
      8,
      true,
    );
    const i = this.#byUnique.get(unique);
    if (i === undefined) return this.#inner.write(parts, total);
    this.#byUnique.delete(unique);
    const entry = this.#entries[i];
    if (!entry.released) {
      entry.pending = joinReply(parts, total);
      return 0;
    }
    this.#commit(i, parts, total);
    return 0;
  }

  /** Puts a reply into entry `i` and has its ring thread commit it. */
  #commit(i: number, parts: Uint8Array[], total: number): void {
    const entry = this.#entries[i];
    const h = entry.header;
    const head = parts[0];
    const error = new DataView(head.buffer, head.byteOffset, OUT_HEADER_SIZE).getInt32(4, true);
    const size = total - OUT_HEADER_SIZE;
    if (size > entry.payload.length) {
      h.setInt32(4, -ERRNO.EIO, true);
      h.setUint32(URING_PAYLOAD_SZ_OFFSET, 0, true);
    } else {
      h.setInt32(4, error, true);
      let at = 0, skip = OUT_HEADER_SIZE;
      for (const p of parts) {
        const from = Math.min(skip, p.length);
        skip -= from;
        if (from < p.length) {
          entry.payload.set(from === 0 ? p : p.subarray(from), at);
          at += p.length - from;
        }
      }
      h.setUint32(URING_PAYLOAD_SZ_OFFSET, size, true);
    }
    Atomics.store(this.#ctrl!, CTRL_ENTRIES + i * ENTRY_WORDS, REPLIED);
    libc().write(this.#eventFds[entry.qid], new Uint8Array(this.#event.buffer), 8n);
  }

  describe(): string {
    const ctrl = this.#ctrl;
    if (!ctrl) return "no rings";
    const count = [0, 0, 0, 0];
    for (let i = 0; i < this.#entries.length; i++) {
      count[Atomics.load(ctrl, CTRL_ENTRIES + i * ENTRY_WORDS)]++;
    }
    const pending = this.#entries.filter((e) => e.pending !== undefined).length;
    return `ring entries: ${count[WITH_KERNEL]} with the kernel, ${count[FILLED]} filled, ` +
      `${count[TAKEN]} taken (${this.#byUnique.size} unanswered, ${pending} replies held), ` +
      `${count[REPLIED]} replied, ${Atomics.load(ctrl, CTRL_LOST)} lost; ` +
      `${this.ringRequests} requests through rings`;
  }

  notify(message: Uint8Array<ArrayBuffer>): Promise<boolean> {
    return this.#inner.notify(message);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const ctrl = this.#ctrl;
    if (ctrl) {
      Atomics.store(ctrl, CTRL_GO, -1);
      Atomics.notify(ctrl, CTRL_GO);
      // Each ring thread ends at its eventfd's read (the ring holds the file) or at ENOTCONN.
      for (const efd of this.#eventFds) {
        libc().write(efd, new Uint8Array(this.#event.buffer), 8n);
        libc().close(efd);
      }
    }
    this.#inner.close();
  }
}
