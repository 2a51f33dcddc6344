import { deepStrictEqual, ok } from "node:assert/strict";
import { AT_FDCWD, O_CLOEXEC, O_RDWR, POLLIN } from "../src/linux/mod.ts";
import { BytesReply } from "../src/protocol/mod.ts";
import { DATA_OFFSET, Op } from "./io_jobs.ts";
import { cString, Libc } from "./libc.ts";
import { IoPool, type Job, STALL_MS } from "./workers.ts";

Deno.test("io jobs: a read's payload starts where a BytesReply's does", () => {
  deepStrictEqual(DATA_OFFSET, BytesReply.bytesFor(0));
});

/** A pool whose completions are polled here (bounded), as the main loop would. */
function testPool(
  libc: Libc,
  now?: () => number,
): { pool: IoPool; drain: (until: () => boolean) => void } {
  let source: { fd: number; onReadable: () => void } | undefined;
  const pool = new IoPool({
    libc,
    log: () => {},
    watch: (fd, onReadable) => (source = { fd, onReadable }),
  }, now);
  const drain = (until: () => boolean): void => {
    const deadline = Date.now() + 10_000;
    const fds = new Uint8Array(8);
    while (!until()) {
      if (Date.now() > deadline) throw new Error("the I/O worker did not complete in 10 s");
      if (!source) throw new Error("the pool never watched its eventfd");
      const view = new DataView(fds.buffer);
      view.setInt32(0, source.fd, true);
      view.setInt16(4, POLLIN, true);
      view.setInt16(6, 0, true);
      if (libc.fn.poll(fds, 1n, 100) > 0) source.onReadable();
    }
  };
  return { pool, drain };
}

Deno.test("I/O worker: jobs complete in order with their data; a handle is idle after its last", () => {
  const libc = new Libc();
  const path = Deno.makeTempFileSync({ prefix: "dockerfuse-workers-" });
  const content = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
  Deno.writeFileSync(path, content);
  const fd = libc.fn.openat(AT_FDCWD, cString(path)!, O_RDWR | O_CLOEXEC, 0);
  ok(fd >= 0);
  try {
    const { pool, drain } = testPool(libc);
    const done: string[] = [];
    const job = (
      name: string,
      op: number,
      args: bigint[],
      check?: (r: bigint, d: Uint8Array) => void,
    ): Job => ({
      op,
      fd,
      args,
      handles: [5],
      done: (r, data) => {
        check?.(r, data);
        done.push(name);
      },
    });
    const readAt = (offset: number, size: number) => (r: bigint, data: Uint8Array) => {
      deepStrictEqual(r, BigInt(Math.min(size, content.length - offset)));
      deepStrictEqual(
        data.subarray(DATA_OFFSET, DATA_OFFSET + Number(r)),
        content.subarray(offset, offset + Number(r)),
      );
    };
    ok(pool.submit(job("a", Op.PREAD, [0n, 1n << 20n], readAt(0, 1 << 20))));
    ok(pool.submit(job("b", Op.PREAD, [5000n, 1000n], readAt(5000, 1000))));
    ok(pool.submit(job("c", Op.FSYNC, [0n], (r) => deepStrictEqual(r, 0n))));
    ok(
      pool.submit(
        job(
          "d",
          Op.PREAD,
          [BigInt(content.length - 10), 1n << 20n],
          readAt(content.length - 10, 1 << 20),
        ),
      ),
    );
    ok(pool.submit(job("e", Op.FALLOCATE, [0n, 0n, 4n << 20n], (r) => deepStrictEqual(r, 0n))));
    ok(pool.busy(5));
    let idle = false;
    pool.whenIdle(5, () => (idle = true));
    drain(() => idle);
    deepStrictEqual(done, ["a", "b", "c", "d", "e"]);
    deepStrictEqual([pool.busy(5), pool.pending], [false, 0]);
    deepStrictEqual(Deno.statSync(path).size, 4 << 20); // fallocate grew it
    let failed: bigint | undefined;
    ok(
      pool.submit({
        op: Op.PREAD,
        fd: 999_999,
        args: [0n, 10n],
        handles: [6],
        done: (r) => (failed = r),
      }),
    );
    drain(() => failed !== undefined);
    deepStrictEqual(failed, -9n); // EBADF
  } finally {
    libc.fn.close(fd);
    Deno.removeSync(path);
  }
});

Deno.test("I/O workers: a job running past STALL_MS gets nothing behind it; a second worker takes the next", () => {
  const libc = new Libc();
  const path = Deno.makeTempFileSync({ prefix: "dockerfuse-workers-" });
  Deno.writeFileSync(path, new Uint8Array(4096).fill(7));
  const fd = libc.fn.openat(AT_FDCWD, cString(path)!, O_RDWR | O_CLOEXEC, 0);
  try {
    let clock = 1000;
    const { pool, drain } = testPool(libc, () => clock);
    const done: string[] = [];
    const job = (name: string, handle: number): Job => ({
      op: Op.PREAD,
      fd,
      args: [0n, 10n],
      handles: [handle],
      done: (r) => {
        deepStrictEqual(r, 10n);
        done.push(name);
      },
    });
    ok(pool.submit(job("a", 1)));
    ok(pool.submit(job("b", 2))); // behind a, which is young: same worker
    deepStrictEqual(pool.workers, 1);
    // Nothing was consumed meanwhile: to the pool, a has been running since the clock read 1000.
    clock += STALL_MS + 1;
    ok(pool.submit(job("c", 3)));
    deepStrictEqual(pool.workers, 2);
    drain(() => done.length === 3);
    deepStrictEqual([...done].sort(), ["a", "b", "c"]);
    // Both workers idle now: new jobs go to the least loaded, no third worker.
    clock += 10 * STALL_MS;
    for (const name of ["d", "e", "f", "g"]) ok(pool.submit(job(name, 4)));
    drain(() => done.length === 7);
    deepStrictEqual([pool.workers, pool.pending, pool.busy(4)], [2, 0, false]);
  } finally {
    libc.fn.close(fd);
    Deno.removeSync(path);
  }
});
