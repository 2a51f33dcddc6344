/**
 * Calls that may block for long (reads, fsync, fallocate, copy_file_range) run on one I/O
 * worker (a Deno Worker, satellite/io_worker.ts) so that the main loop keeps answering the
 * others: a `lstat` never waits behind a 1 MiB read from a cold disk or a read of a hung file.
 *
 * Invariants:
 * - Jobs run one at a time in submission order and complete on the main thread, through the
 *   loop source of the worker's eventfd; their answers may overtake earlier inline answers
 *   and be overtaken by later ones (the client matches answers by id).
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
}

/** The I/O worker and its job queue. */
export class IoPool {
  readonly #host: PoolHost;
  #state: "idle" | "running" | "unavailable" = "idle";
  #ring: RingViews | undefined;
  #eventFd = -1;
  #worker: Worker | undefined;
  /** Jobs not yet in the ring, in order. */
  #queue: Job[] = [];
  /** The job in each slot of the ring. */
  readonly #inRing: (Job | undefined)[] = new Array(SLOTS).fill(undefined);
  #submitted = 0;
  #consumed = 0;
  /** Handle → jobs queued or running that use it. */
  readonly #busy = new Map<number, number>();
  /** Handle → what runs once it has no job any more. */
  readonly #idle = new Map<number, (() => void)[]>();
  readonly #counter = new Uint8Array(8);

  constructor(host: PoolHost) {
    this.#host = host;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.#queue.length + ((this.#submitted - this.#consumed) | 0);
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

  /** Queues `job`; false when the worker is unavailable (run the call inline instead). */
  submit(job: Job): boolean {
    if (this.#state === "idle") this.#start();
    if (this.#state !== "running") return false;
    for (const h of job.handles) this.#busy.set(h, (this.#busy.get(h) ?? 0) + 1);
    this.#queue.push(job);
    this.#fill();
    return true;
  }

  #start(): void {
    const c = this.#host.libc;
    try {
      const fd = c.fn.eventfd(0, EFD_CLOEXEC);
      if (fd < 0) throw new Error(`eventfd: errno ${c.errno()}`);
      const sab = new SharedArrayBuffer(RING_BYTES);
      const worker = new Worker(this.#host.workerUrl ?? workerUrl(), {
        type: "module",
        name: "dockerfuse-io",
      });
      worker.onerror = (e) => {
        e.preventDefault();
        this.#host.log(`I/O worker failed: ${e.message}`);
      };
      worker.postMessage({ ring: sab, eventFd: fd });
      this.#ring = ringViews(sab);
      this.#eventFd = fd;
      this.#worker = worker;
      this.#state = "running";
      this.#host.watch(fd, () => this.#onCompleted());
    } catch (e) {
      this.#state = "unavailable";
      this.#host.log(
        `no I/O worker (${e instanceof Error ? e.message : e}): slow calls run on the main thread`,
      );
    }
  }

  /** Moves queued jobs into free slots and wakes the worker. */
  #fill(): void {
    const ring = this.#ring!;
    let added = false;
    while (this.#queue.length > 0 && ((this.#submitted - this.#consumed) | 0) < SLOTS) {
      const job = this.#queue.shift()!;
      const slot = slotOf(this.#submitted);
      const f = ring.fields(slot);
      f[F_OP] = BigInt(job.op);
      f[F_FD] = BigInt(job.fd);
      f[F_FD2] = BigInt(job.fd2 ?? -1);
      for (let i = 0; i < 4; i++) f[F_ARG + i] = job.args[i] ?? 0n;
      f[F_RESULT] = 0n;
      this.#inRing[slot] = job;
      this.#submitted = (this.#submitted + 1) | 0;
      added = true;
    }
    if (added) {
      Atomics.store(ring.control, SUBMITTED, this.#submitted);
      Atomics.notify(ring.control, SUBMITTED);
    }
  }

  /** The eventfd is readable: hands out every completed job, in order. */
  #onCompleted(): void {
    const c = this.#host.libc;
    if (num(c.fn.read(this.#eventFd, this.#counter, 8n)) < 0 && c.errno() !== ERRNO.EINTR) {
      this.#host.log(`cannot read the I/O worker's eventfd: errno ${c.errno()}`);
    }
    const ring = this.#ring!;
    const completed = Atomics.load(ring.control, COMPLETED);
    while (this.#consumed !== completed) {
      const slot = slotOf(this.#consumed);
      const job = this.#inRing[slot]!;
      this.#inRing[slot] = undefined;
      try {
        job.done(ring.fields(slot)[F_RESULT], ring.data(slot));
      } catch (e) {
        this.#host.log(`I/O job answer failed: ${e instanceof Error ? e.stack : e}`);
      }
      // The slot is free only now: its data area held the answer until `done` returned.
      this.#consumed = (this.#consumed + 1) | 0;
      for (const h of job.handles) this.#release(h);
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
