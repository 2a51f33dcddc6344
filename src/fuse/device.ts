/**
 * The /dev/fuse file descriptor as the request loop sees it.
 *
 * A reader Worker does blocking read()s of the device into slots of a SharedArrayBuffer (its
 * errno is readable there, on its own thread) and wakes the JS thread through
 * `Atomics.notify`; the JS thread waits with `Atomics.waitAsync`, so it never blocks. This
 * measured ~31 µs per round trip against ~75 µs for a `nonblocking` FFI read or poll.
 * Replies are written synchronously on the JS thread (the kernel copies them and returns at
 * once), so their errno is readable too.
 *
 * Control words (Int32Array at the start of the shared buffer):
 *   [0] filled counter (worker → main), [1] slot-freed counter (main → worker),
 *   [2] end errno (set by the worker when it stops), [3] errno of a failed read the worker
 *   retries (main → 0 once reported), then per slot: state, length, sequence.
 * A slot is owned by the worker while its state is 0 and by the JS thread while it is 1 or 2.
 *
 * The device knows nothing of the protocol: a sink may give a `ReaderFilter` that the reader
 * runs on each request before handing it over (the session's no-xattrs shortcut), and an
 * `ahead` filter whose answers are sent and the request handed over all the same, marked
 * answered (writes answered ahead).
 *
 * After answering two requests in a row itself the reader polls the device (non-blocking
 * reads, giving way to any thread ready on its CPU) for a while before it sleeps: a process
 * served from such answers (a warm `ls -lR`, `grep -r`) sends its next request within
 * microseconds, and waking a sleeping thread costs more than the answer (on VMs a halted vCPU:
 * 52 µs per GETXATTR round trip against 17 µs). After handing a request over, or a lone
 * answer among requests handed over (a GETATTR amid a stream of READs), it sleeps at once,
 * leaving the CPU to the threads that answer those.
 *
 * @module
 */

import { ERRNO, F_GETFL, F_SETFL, O_NONBLOCK, POLLIN } from "../linux/mod.ts";
import { errno, libc } from "./libc.ts";

const CTRL_FILLED = 0;
const CTRL_FREED = 1;
const CTRL_END = 2;
const CTRL_RETRIED = 3;
const CTRL_SLOTS = 4;
const SLOT_WORDS = 3;
/**
 * Reads that failed with any other errno than "gone" are retried this many times in a row, 1 ms
 * apart, before a reader thread gives up (this one, and the io_uring rings' waits): an unmounted
 * or aborted connection answers ENODEV or ECONNABORTED again at once, so only a transient failure
 * outlives it. The errno seen can be wrong: CI once read ERANGE, which no read of /dev/fuse
 * returns (V8's own calls between the failed read and the errno's reading can overwrite it, e.g.
 * an EINTR).
 */
export const FAILED_READ_RETRIES = 200;
/** Largest reply a reader filter may write. */
export const FILTER_REPLY_MAX = 4096;

/** One request buffer handed to the session; `release` gives it back to the device. */
export interface RequestBuffer {
  bytes: Uint8Array;
  view: DataView;
  release(): void;
}

/** The function a filter's source evaluates to, once given its state. */
export type RequestFilter = (request: DataView, length: number, reply: DataView) => number;

/**
 * A request filter the reader runs on its own thread before handing a request over. `source`
 * is a self-contained JavaScript expression: a function of `state` returning a
 * `RequestFilter`, which gives the length of a reply it wrote into `reply` (the reader writes
 * it to the kernel and drops the request) or 0 to pass the request on.
 */
export interface ReaderFilter {
  readonly source: string;
  /** Structured-cloneable; its SharedArrayBuffers are shared with the reader. */
  readonly state: unknown;
}

/**
 * The filter `make(state, constants)` as the reader builds it: `make` must be self-contained
 * (its source is shipped; it uses only its arguments and JavaScript globals).
 */
export function shipFilter<S, K>(
  make: (state: S, constants: K) => RequestFilter,
  state: S,
  constants: K,
): ReaderFilter {
  return { source: `(state) => (${make.toString()})(state, ${JSON.stringify(constants)})`, state };
}

/** One filter running `filters` in turn on each request (the first answer wins). */
export function combineFilters(filters: readonly ReaderFilter[]): ReaderFilter | undefined {
  if (filters.length <= 1) return filters[0];
  const parts = filters.map((f, i) => `(${f.source})(states[${i}])`).join(", ");
  return {
    source: `(states) => { const all = [${parts}]; return (q, n, r) => { ` +
      `for (const f of all) { const k = f(q, n, r); if (k > 0) return k; } return 0; }; }`,
    state: filters.map((f) => f.state),
  };
}

/** Receives what a device reads. */
export interface DeviceSink {
  /**
   * One request of `length` bytes in `buffer`; the sink must call `buffer.release()`.
   * `answered`: the `ahead` filter already answered it (the sink must not).
   */
  request(buffer: RequestBuffer, length: number, answered?: boolean): void;
  /** The connection is gone (`errno` ENODEV when unmounted) or the reader failed. */
  end(errno: number): void;
  /** A read failed with `errno` and the reader reads again (said once per run of failures). */
  retried?(errno: number): void;
  /** Run by the reader on each request first (devices without a reader thread may ignore it). */
  readonly filter?: ReaderFilter;
  /**
   * Run by the reader before `filter`: a request it answers is handed over too, marked answered
   * (devices without a reader thread may ignore it; devices that run it must mark them).
   */
  readonly ahead?: ReaderFilter;
}

/**
 * A reply's `parts` (`total` bytes, as `Device.write` gets them) one after the other in a new
 * array: a copy that outlives the session's reply buffer, which the next reply reuses.
 */
export function joinReply(parts: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Where requests come from and replies go (the kernel, or a test double). */
export interface Device {
  /** Starts delivering requests to `sink` (once). */
  start(sink: DeviceSink): void;
  /** Writes one reply made of `parts` (`total` bytes); 0 or a positive errno. */
  write(parts: Uint8Array[], total: number): number;
  /**
   * Writes a notification from a worker thread (the kernel may block it on locks held by
   * requests this thread must answer); true if the kernel accepted it.
   */
  notify(message: Uint8Array<ArrayBuffer>): Promise<boolean>;
  /** Releases the device (after `end`). */
  close(): void;
  /** INIT flags the device needs agreed (FUSE over io_uring), if any. */
  readonly initFlags?: bigint;
  /** INIT was answered with `flags` (the device may start serving otherwise). */
  initialized?(flags: bigint): void;
  /** What the device holds of requests in flight, for a log line about stuck requests. */
  describe?(): string;
}

// The reader worker: self-contained (no imports), so it also works in a compiled binary. It
// loads libc as it starts and waits for its device in its first message (see spawnReader).
const WORKER_SOURCE = `
const lib = Deno.dlopen("libc.so.6", {
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  sched_yield: { parameters: [], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
}).symbols;
// Read without allocating: a collection between a failed call and this read may make
// calls of its own that set errno (this thread's errno lives at a fixed address).
const errnoView = new Deno.UnsafePointerView(lib.__errno_location());
const errno = () => errnoView.getInt32(0);
self.onmessage = (event) => {
  const {
    sab, fd, slots, slotSize, dataOffset, filterSource, filterState, aheadSource, aheadState,
    spinMicros,
  } = event.data;
  // Spinning reads are non-blocking; sleeping is a poll() for input (or an error: the next
  // read then reports it).
  const spinMs = spinMicros / 1000;
  let spinning = false;
  if (spinMs > 0) {
    const fl = lib.fcntl(fd, ${F_GETFL}, 0);
    spinning = fl >= 0 && lib.fcntl(fd, ${F_SETFL}, fl | ${O_NONBLOCK}) === 0;
  }
  const pollFd = new Uint8Array(8);
  new DataView(pollFd.buffer).setInt32(0, fd, true);
  new DataView(pollFd.buffer).setInt16(4, ${POLLIN}, true);
  let spinUntil = 0, answeredInRow = 0;
  const slotBytes = BigInt(slotSize);
  const ctrl = new Int32Array(sab, 0, ${CTRL_SLOTS} + slots * ${SLOT_WORDS});
  const views = [], dataViews = [];
  for (let i = 0; i < slots; i++) {
    views.push(new Uint8Array(sab, dataOffset + i * slotSize, slotSize));
    dataViews.push(new DataView(sab, dataOffset + i * slotSize, slotSize));
  }
  const filter = filterSource ? new Function("return (" + filterSource + ");")()(filterState) : null;
  const ahead = aheadSource ? new Function("return (" + aheadSource + ");")()(aheadState) : null;
  const reply = new Uint8Array(${FILTER_REPLY_MAX});
  const replyView = new DataView(reply.buffer);
  // A reply \`f\` wrote: sent here; a failed write means the request was interrupted.
  const answered = (f, s, n) => {
    let r = 0;
    try {
      r = f(dataViews[s], n, replyView);
    } catch {
      return false;
    }
    if (!(r > 0 && r <= ${FILTER_REPLY_MAX})) return false;
    lib.write(fd, reply, BigInt(r));
    return true;
  };

  // A word nobody changes: waiting on it sleeps.
  const nap = new Int32Array(new SharedArrayBuffer(4));
  let next = 0, seq = 0, end = 0, failures = 0, oddFailures = 0;
  for (;;) {
    const freed = Atomics.load(ctrl, ${CTRL_FREED});
    let s = -1;
    for (let k = 0; k < slots; k++) {
      const i = (next + k) % slots;
      if (Atomics.load(ctrl, ${CTRL_SLOTS} + i * ${SLOT_WORDS}) === 0) { s = i; break; }
    }
    if (s < 0) { Atomics.wait(ctrl, ${CTRL_FREED}, freed); continue; }
    const n = Number(lib.read(fd, views[s], slotBytes));
    if (n < 0) {
      const e = errno();
      if (spinning && e === ${ERRNO.EAGAIN}) {
        if (spinUntil !== 0 && performance.now() >= spinUntil) spinUntil = 0;
        // A spin gives way to any thread ready on this CPU (the process it answers may be
        // woken here); sleeping waits for input.
        if (spinUntil === 0) lib.poll(pollFd, 1n, -1);
        else lib.sched_yield();
        continue;
      }
      // EINTR, EAGAIN, ENOENT (an interrupted request): read again.
      const retry = e === ${ERRNO.EINTR} || e === ${ERRNO.EAGAIN} || e === ${ERRNO.ENOENT};
      if (retry && ++failures < 1000) continue;
      // Gone (unmounted, aborted, not a device): stop. Anything else is retried a while, said
      // to the JS thread, so one odd failure does not end a mount.
      const gone = e === ${ERRNO.ENODEV} || e === ${ERRNO.ECONNABORTED} || e === ${ERRNO.EBADF} ||
        e === ${ERRNO.EPERM};
      if (!retry && !gone && ++oddFailures < ${FAILED_READ_RETRIES}) {
        if (oddFailures === 1) { // said once per run of failures
          Atomics.store(ctrl, ${CTRL_RETRIED}, e || ${ERRNO.EIO});
          Atomics.add(ctrl, ${CTRL_FILLED}, 1);
          Atomics.notify(ctrl, ${CTRL_FILLED});
        }
        Atomics.wait(nap, 0, 0, 1);
        continue;
      }
      end = e || ${ERRNO.EIO};
      break;
    }
    failures = 0;
    oddFailures = 0;
    const early = ahead !== null && answered(ahead, s, n);
    if (!early && filter !== null && answered(filter, s, n)) {
      if (spinning && ++answeredInRow >= 2) spinUntil = performance.now() + spinMs;
      continue;
    }
    spinUntil = 0;
    answeredInRow = 0;
    const base = ${CTRL_SLOTS} + s * ${SLOT_WORDS};
    // A negative length: answered ahead.
    ctrl[base + 1] = early ? -n : n;
    ctrl[base + 2] = ++seq;
    Atomics.store(ctrl, base, 1);
    Atomics.add(ctrl, ${CTRL_FILLED}, 1);
    Atomics.notify(ctrl, ${CTRL_FILLED});
    next = s + 1;
  }
  Atomics.store(ctrl, ${CTRL_END}, end);
  Atomics.add(ctrl, ${CTRL_FILLED}, 1);
  Atomics.notify(ctrl, ${CTRL_FILLED});
  self.close();
};
`;

/**
 * Starts a reader worker before its device exists: a worker's start holds the calling thread
 * for tens of milliseconds, worth spending while waiting on something else. Give it to a
 * `FuseDevice` as `reader`, or `terminate()` it.
 */
export function spawnReader(): Worker {
  const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" }));
  try {
    return new Worker(url, { type: "module" });
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** A /dev/fuse descriptor served by a reader worker. */
export class FuseDevice implements Device {
  readonly fd: number;
  #slots: number;
  #slotSize: number;
  #closed = false;
  #iov = new BigUint64Array(16);
  /** The reader: given or started by `start`; started once `#started`. */
  #worker: Worker | undefined;
  #started = false;
  #spinMicros: number;
  #readerSpinMicros: number;

  /**
   * `slotSize` must be at least max_write + 8 KiB; `slots` bounds requests read ahead;
   * `spinMicros`: how long the JS thread polls the shared counter before sleeping;
   * `readerSpinMicros`: how long the reader polls the device after answering a request itself;
   * `reader`: a worker from `spawnReader` (else one is started by `start`), owned from now on.
   */
  constructor(
    fd: number,
    options: {
      slots?: number;
      slotSize: number;
      spinMicros?: number;
      readerSpinMicros?: number;
      reader?: Worker;
    },
  ) {
    this.#worker = options.reader;
    this.#spinMicros = Math.max(0, Math.min(1000, options.spinMicros ?? 0));
    this.#readerSpinMicros = Math.max(0, Math.min(1000, options.readerSpinMicros ?? 0));
    this.fd = fd;
    this.#slots = Math.max(2, Math.min(256, options.slots ?? 16));
    this.#slotSize = options.slotSize;
  }

  start(sink: DeviceSink): void {
    if (this.#started) return;
    this.#started = true;
    const slots = this.#slots, slotSize = this.#slotSize;
    const dataOffset = Math.ceil((CTRL_SLOTS + slots * SLOT_WORDS) * 4 / 4096) * 4096;
    const sab = new SharedArrayBuffer(dataOffset + slots * slotSize);
    const ctrl = new Int32Array(sab, 0, CTRL_SLOTS + slots * SLOT_WORDS);
    const buffers: RequestBuffer[] = [];
    for (let i = 0; i < slots; i++) {
      const bytes = new Uint8Array(sab, dataOffset + i * slotSize, slotSize);
      const state = CTRL_SLOTS + i * SLOT_WORDS;
      buffers.push({
        bytes,
        view: new DataView(sab, dataOffset + i * slotSize, slotSize),
        release: () => {
          Atomics.store(ctrl, state, 0);
          Atomics.add(ctrl, CTRL_FREED, 1);
          Atomics.notify(ctrl, CTRL_FREED);
        },
      });
    }
    const worker = this.#worker ??= spawnReader();
    worker.postMessage({
      sab,
      fd: this.fd,
      slots,
      slotSize,
      dataOffset,
      filterSource: sink.filter?.source,
      filterState: sink.filter?.state,
      aheadSource: sink.ahead?.source,
      aheadState: sink.ahead?.state,
      spinMicros: this.#readerSpinMicros,
    });

    const pending: number[] = [];
    const spinMs = this.#spinMicros / 1000;
    const pump = async (): Promise<void> => {
      let seen = Atomics.load(ctrl, CTRL_FILLED);
      for (;;) {
        pending.length = 0;
        for (let i = 0; i < slots; i++) {
          // State 1 = filled and not yet taken; 2 = taken (the session owns it until release).
          if (Atomics.load(ctrl, CTRL_SLOTS + i * SLOT_WORDS) === 1) pending.push(i);
        }
        if (pending.length > 1) {
          pending.sort((a, b) =>
            ctrl[CTRL_SLOTS + a * SLOT_WORDS + 2] - ctrl[CTRL_SLOTS + b * SLOT_WORDS + 2]
          );
        }
        for (const i of pending) {
          const base = CTRL_SLOTS + i * SLOT_WORDS;
          Atomics.store(ctrl, base, 2);
          const n = ctrl[base + 1];
          sink.request(buffers[i], n < 0 ? -n : n, n < 0);
        }
        const retried = Atomics.exchange(ctrl, CTRL_RETRIED, 0);
        if (retried !== 0) sink.retried?.(retried);
        const end = Atomics.load(ctrl, CTRL_END);
        if (end !== 0) {
          sink.end(end);
          return;
        }
        if (spinMs > 0) {
          const until = performance.now() + spinMs;
          while (Atomics.load(ctrl, CTRL_FILLED) === seen && performance.now() < until) {
            /* spin */
          }
        }
        const r = Atomics.waitAsync(ctrl, CTRL_FILLED, seen);
        if (r.async) await r.value;
        seen = Atomics.load(ctrl, CTRL_FILLED);
      }
    };
    pump().catch((error) => {
      console.error(`FUSE device pump failed: ${error}`);
      sink.end(ERRNO.EIO);
    });
  }

  write(parts: Uint8Array[], total: number): number {
    if (this.#closed) return ERRNO.ENODEV;
    const c = libc();
    let n: number;
    if (parts.length === 1) {
      n = Number(c.write(this.fd, parts[0] as Uint8Array<ArrayBuffer>, BigInt(total)));
    } else {
      if (parts.length > this.#iov.length / 2) this.#iov = new BigUint64Array(parts.length * 2);
      const iov = this.#iov;
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i] as Uint8Array<ArrayBuffer>;
        iov[2 * i] = p.length === 0
          ? 0n
          : BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(p)));
        iov[2 * i + 1] = BigInt(p.length);
      }
      n = Number(c.writev(this.fd, new Uint8Array(iov.buffer), parts.length));
    }
    if (n < 0) return errno() || ERRNO.ENODEV;
    return 0;
  }

  async notify(message: Uint8Array<ArrayBuffer>): Promise<boolean> {
    if (this.#closed) return false;
    const n = await libc().writeAsync(this.fd, message, BigInt(message.length));
    return Number(n) === message.length;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#worker?.terminate();
    libc().close(this.fd);
  }
}
