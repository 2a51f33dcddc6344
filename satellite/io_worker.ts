/**
 * The satellite's I/O worker: runs the calls that may block for long (reads, fsync, fallocate,
 * copy_file_range) off the main thread, one at a time, in submission order. It sleeps in
 * Atomics.wait on the ring's SUBMITTED counter and, after each job, bumps COMPLETED and writes
 * the main loop's eventfd. It owns no descriptor: the main thread keeps every fd a job uses
 * open until the job has completed.
 *
 * @module
 */

import { ERRNO } from "../src/linux/mod.ts";
import {
  COMPLETED,
  DATA_OFFSET,
  F_ARG,
  F_FD,
  F_FD2,
  F_OP,
  F_RESULT,
  Op,
  ringViews,
  slotOf,
  SUBMITTED,
} from "./io_jobs.ts";
import { big, Libc, num } from "./libc.ts";

/** The first message: the ring and the eventfd to signal. */
export interface WorkerStart {
  readonly ring: SharedArrayBuffer;
  readonly eventFd: number;
}

/** Runs jobs forever (the process ends the thread). */
export function serveJobs(start: WorkerStart): never {
  const libc = new Libc();
  const ring = ringViews(start.ring);
  const one = new Uint8Array(new BigUint64Array([1n]).buffer);
  const pair = new BigInt64Array(2);
  const pairBytes = new Uint8Array(pair.buffer);
  let done = Atomics.load(ring.control, COMPLETED);
  for (;;) {
    while (Atomics.load(ring.control, SUBMITTED) === done) {
      Atomics.wait(ring.control, SUBMITTED, done);
    }
    const slot = slotOf(done);
    const f = ring.fields(slot);
    f[F_RESULT] = run(libc, f, ring.data(slot), pair, pairBytes);
    done = (done + 1) | 0;
    Atomics.store(ring.control, COMPLETED, done);
    while (num(libc.fn.write(start.eventFd, one, 8n)) < 0 && libc.errno() === ERRNO.EINTR) {
      // retry
    }
  }
}

/** One job; its result: bytes (or 0) on success, -errno on failure. */
function run(
  libc: Libc,
  f: BigInt64Array,
  data: Uint8Array,
  pair: BigInt64Array,
  pairBytes: Uint8Array,
): bigint {
  const fd = Number(f[F_FD]);
  const c = libc.fn;
  for (;;) {
    let r: bigint;
    switch (Number(f[F_OP])) {
      case Op.PREAD:
        return pread(libc, fd, f[F_ARG], Number(f[F_ARG + 1]), data);
      case Op.FSYNC:
        r = BigInt(f[F_ARG] === 1n ? c.fdatasync(fd) : c.fsync(fd));
        break;
      case Op.FALLOCATE:
        r = BigInt(c.fallocate64(fd, Number(f[F_ARG]), f[F_ARG + 1], f[F_ARG + 2]));
        break;
      case Op.COPY_FILE_RANGE:
        pair[0] = f[F_ARG];
        pair[1] = f[F_ARG + 1];
        r = big(c.sys_copy_file_range(
          libc.sys.copy_file_range,
          fd,
          pairBytes.subarray(0, 8),
          Number(f[F_FD2]),
          pairBytes.subarray(8),
          f[F_ARG + 2],
          Number(f[F_ARG + 3]),
        ));
        break;
      default:
        return -BigInt(ERRNO.ENOSYS);
    }
    if (r >= 0n) return r;
    const errno = libc.errno();
    if (errno !== ERRNO.EINTR || Number(f[F_OP]) === Op.COPY_FILE_RANGE) return -BigInt(errno);
  }
}

/** pread until `size` bytes or end of file; a failure after some bytes gives those bytes. */
function pread(libc: Libc, fd: number, offset: bigint, size: number, data: Uint8Array): bigint {
  const out = data.subarray(DATA_OFFSET, DATA_OFFSET + size);
  let done = 0;
  while (done < size) {
    const n = num(
      libc.fn.pread64(
        fd,
        done === 0 ? out : out.subarray(done),
        BigInt(size - done),
        offset + BigInt(done),
      ),
    );
    if (n < 0) {
      const errno = libc.errno();
      if (errno === ERRNO.EINTR) continue;
      if (done > 0) break;
      return -BigInt(errno);
    }
    if (n === 0) break;
    done += n;
  }
  return BigInt(done);
}

// As a worker: wait for the start message, then serve.
const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WorkerStart>) => void) | null;
  WorkerGlobalScope?: unknown;
};
if (scope.WorkerGlobalScope !== undefined) {
  scope.onmessage = (e) => {
    scope.onmessage = null;
    serveJobs(e.data);
  };
}
