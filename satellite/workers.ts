/**
 * Calls that may block for long (reads, fsync, fallocate, copy_file_range) run on an I/O
 * worker (a Deno Worker, satellite/io_worker.ts) so that the main loop keeps answering the
 * others: a `lstat` never waits behind a 1 MiB read from a cold disk or a read of a hung file.
 *
 * Invariants:
 * - Each worker runs its jobs one at a time, in the order given; jobs complete on the main
 *   thread, through the loop source of the workers' eventfd; their answers may overtake earlier
 *   answers and be overtaken by later ones (the client matches answers by id).
 * - A second worker starts only when the first has run one job for over STALL_MS (a hung file):
 *   no new job is put behind a stalled worker, so a hung read holds up only the job (at most
 *   one) already queued behind it. With two workers, jobs on one handle may run concurrently
 *   (the kernel had them in flight at once: no order between them is owed).
 * - Every job names the handles whose descriptors it uses; while a handle has a job queued or
 *   running it stays open: `whenIdle` runs its release once the last one has completed.
 * - Writes are not jobs: they stay in order on the main thread, so whatever is sent after a
 *   write (a read, a stat, an fsync) sees it.
 * - The worker starts at the first job (its isolate costs memory; metadata-only mounts never
 *   pay it); when it cannot start, `submit` answers false and callers run the call inline.
 *
 * @module
 */

import { EFD_CLOEXEC, ERRNO } from "../src/linux/mod.ts";
import {
  COMPLETED,
  F_ARG,
  F_FD,
  F_FD2,
  F_OP,
  F_RESULT,
  RING_BYTES,
  type RingViews,
  ringViews,
  slotOf,
  SLOTS,
  SUBMITTED,
} from "./io_jobs.ts";
import { type Libc, num } from "./libc.ts";

/** Replaced by the packaging step with the bundled worker's source (tasks/satellite). */
const WORKER_SOURCE_SLOT: string = "@@DOCKERFUSE_IO_WORKER@@";

/** One call to run on the worker. */
export interface Job {
  /** An {@link Op} of io_jobs.ts. */
  readonly op: number;
  readonly fd: number;
  readonly fd2?: number;
  /** Up to four 64-bit arguments (see Op). */
  readonly args: readonly bigint[];
  /** Handles whose descriptors the job uses (kept open until it completes). */
  readonly handles: readonly number[];
  /**
   * On the main thread once done: the result (bytes or 0, or -errno) and the slot's data area,
   * valid until this returns.
   */
  readonly done: (result: bigint, data: Uint8Array) => void;
}

/** How the pool reaches the main loop. */
export interface PoolHost {
  readonly libc: Libc;
  /** Watches `fd` for readability (the main loop's `add`). */
  watch(fd: number, onReadable: () => void): void;
  log(message: string): void;
  /** Where the worker's module is (default: the bundled source, or io_worker.ts from source). */
  workerUrl?: string | URL;
  /** Told each time a worker starts (it costs about {@link WORKER_BYTES}). */
  onWorkerStarted?: () => void;
}

/** Memory a worker costs: its isolate (about 6 MiB, measured) and its ring (2 MiB). */
export const WORKER_BYTES = 8 * 1024 * 1024;

/** One worker and its ring. */
interface Runner {
  readonly ring: RingViews;
  readonly worker: Worker;
  /** The job in each slot. */
  readonly inRing: (Job | undefined)[];
  submitted: number;
  consumed: number;
  /** When the job now running (the oldest unconsumed) started, in ms (performance.now). */
  busySince: number;
}

/**
 * A worker whose running job has taken this long is stalled (a hung file, a dead network
 * mount): no job is put behind it, and a second worker is started for the next ones. Long
 * enough that a cold 1 MiB read on a busy machine, or a worker's start under qemu, is not one.
 */
export const STALL_MS = 1000;
/** Workers at most (each costs about 7 MiB): the second only once the first has stalled. */
export const MAX_WORKERS = 2;

/** The I/O workers and their job queue. */
export class IoPool {
  readonly #host: PoolHost;
  readonly #now: () => number;
  #eventFd = -1;
  #unavailable = false;
  readonly #runners: Runner[] = [];
  /** Jobs not yet in a ring, in order. */
  #queue: Job[] = [];
  /** Handle → jobs queued or running that use it. */
  readonly #busy = new Map<number, number>();
  /** Handle → what runs once it has no job any more. */
  readonly #idle = new Map<number, (() => void)[]>();
  readonly #counter = new Uint8Array(8);

  constructor(host: PoolHost, now: () => number = () => performance.now()) {
    this.#host = host;
    this.#now = now;
  }

  /** Jobs queued or running. */
  get pending(): number {
    let n = this.#queue.length;
    for (const r of this.#runners) n += (r.submitted - r.consumed) | 0;
    return n;
  }

  /** Workers started so far. */
  get workers(): number {
    return this.#runners.length;
  }

  /** True while `handle` has a job queued or running. */
  busy(handle: number): boolean {
    return this.#busy.has(handle);
  }

  /** Runs `fn` once `handle` has no job queued or running (at once if it has none). */
  whenIdle(handle: number, fn: () => void): void {
    if (!this.#busy.has(handle)) return fn();
    const list = this.#idle.get(handle);
    if (list) list.push(fn);
    else this.#idle.set(handle, [fn]);
  }

  /**
   * Starts the first worker ahead of the first job: a worker's start takes this thread and the
   * job's caller tens of milliseconds, better spent while nothing is asked. False if none can run.
   */
  prestart(): boolean {
    if (this.#runners.length > 0) return true;
    if (!this.#startRunner()) return false;
    this.#host.log("I/O worker 1 started ahead of the first job");
    return true;
  }

  /** Queues `job`; false when no worker can run (run the call inline instead). */
  submit(job: Job): boolean {
    if (this.#runners.length === 0 && !this.#startRunner()) return false;
    for (const h of job.handles) this.#busy.set(h, (this.#busy.get(h) ?? 0) + 1);
    this.#queue.push(job);
    this.#fill();
    return true;
  }

  /** Starts one more worker (and the shared eventfd with the first); false if it cannot. */
  #startRunner(): boolean {
    if (this.#unavailable) return false;
    const c = this.#host.libc;
    try {
      if (this.#eventFd < 0) {
        const fd = c.fn.eventfd(0, EFD_CLOEXEC);
        if (fd < 0) throw new Error(`eventfd: errno ${c.errno()}`);
        this.#eventFd = fd;
        this.#host.watch(fd, () => this.#onCompleted());
      }
      const sab = new SharedArrayBuffer(RING_BYTES);
      const worker = new Worker(this.#host.workerUrl ?? workerUrl(), {
        type: "module",
        name: `dockerfuse-io-${this.#runners.length + 1}`,
      });
      worker.postMessage({ ring: sab, eventFd: this.#eventFd });
      this.#runners.push({
        ring: ringViews(sab),
        worker,
        inRing: new Array(SLOTS).fill(undefined),
        submitted: 0,
        consumed: 0,
        busySince: 0,
      });
      this.#host.onWorkerStarted?.();
      if (this.#runners.length > 1) {
        this.#host.log(`an I/O job has run for over ${STALL_MS} ms: I/O worker 2 started`);
      }
      return true;
    } catch (e) {
      this.#unavailable = true;
      this.#host.log(
        `cannot start an I/O worker (${e instanceof Error ? e.message : e})` +
          (this.#runners.length ? "" : ": slow calls run on the main thread"),
      );
      return false;
    }
  }

  /** The runner to take the next job: a free slot, not stalled, the least loaded. */
  #pick(now: number): Runner | undefined {
    let best: Runner | undefined;
    let allStalled = true;
    for (const r of this.#runners) {
      const load = (r.submitted - r.consumed) | 0;
      const stalled = load > 0 && now - r.busySince > STALL_MS;
      if (!stalled) allStalled = false;
      if (stalled || load >= SLOTS) continue;
      if (!best || load < ((best.submitted - best.consumed) | 0)) best = r;
    }
    if (best) return best;
    if (allStalled && this.#runners.length < MAX_WORKERS && this.#startRunner()) {
      return this.#runners[this.#runners.length - 1];
    }
    return undefined;
  }

  /** Moves queued jobs into free slots of runners that are not stalled, and wakes them. */
  #fill(): void {
    const now = this.#now();
    const woken = new Set<Runner>();
    while (this.#queue.length > 0) {
      const r = this.#pick(now);
      if (!r) break;
      const job = this.#queue.shift()!;
      const slot = slotOf(r.submitted);
      const f = r.ring.fields(slot);
      f[F_OP] = BigInt(job.op);
      f[F_FD] = BigInt(job.fd);
      f[F_FD2] = BigInt(job.fd2 ?? -1);
      for (let i = 0; i < 4; i++) f[F_ARG + i] = job.args[i] ?? 0n;
      f[F_RESULT] = 0n;
      r.inRing[slot] = job;
      if (r.submitted === r.consumed) r.busySince = now;
      r.submitted = (r.submitted + 1) | 0;
      woken.add(r);
    }
    for (const r of woken) {
      Atomics.store(r.ring.control, SUBMITTED, r.submitted);
      Atomics.notify(r.ring.control, SUBMITTED);
    }
  }

  /** The eventfd is readable: hands out every completed job, in order per worker. */
  #onCompleted(): void {
    const c = this.#host.libc;
    if (num(c.fn.read(this.#eventFd, this.#counter, 8n)) < 0 && c.errno() !== ERRNO.EINTR) {
      this.#host.log(`cannot read the I/O workers' eventfd: errno ${c.errno()}`);
    }
    for (const r of this.#runners) {
      const completed = Atomics.load(r.ring.control, COMPLETED);
      if (r.consumed === completed) continue;
      while (r.consumed !== completed) {
        const slot = slotOf(r.consumed);
        const job = r.inRing[slot]!;
        r.inRing[slot] = undefined;
        try {
          job.done(r.ring.fields(slot)[F_RESULT], r.ring.data(slot));
        } catch (e) {
          this.#host.log(`I/O job answer failed: ${e instanceof Error ? e.stack : e}`);
        }
        // The slot is free only now: its data area held the answer until `done` returned.
        r.consumed = (r.consumed + 1) | 0;
        for (const h of job.handles) this.#release(h);
      }
      // The next job (if any) started when the last one completed, about now.
      r.busySince = this.#now();
    }
    this.#fill();
  }

  #release(handle: number): void {
    const n = (this.#busy.get(handle) ?? 1) - 1;
    if (n > 0) {
      this.#busy.set(handle, n);
      return;
    }
    this.#busy.delete(handle);
    const waiting = this.#idle.get(handle);
    if (!waiting) return;
    this.#idle.delete(handle);
    for (const fn of waiting) fn();
  }
}

/** The worker module: the bundled source as a blob, or io_worker.ts next to this file. */
function workerUrl(): string | URL {
  if (WORKER_SOURCE_SLOT.startsWith("@@")) return new URL("./io_worker.ts", import.meta.url);
  return URL.createObjectURL(new Blob([WORKER_SOURCE_SLOT], { type: "text/javascript" }));
}
