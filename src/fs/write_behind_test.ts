import { deepStrictEqual, ok as assert } from "node:assert/strict";
import { EIO, ENOSPC } from "../fuse/mod.ts";
import type { CallOptions, RpcCalls, RpcResult } from "../protocol/mod.ts";
import { FileWrites, WriteBehind } from "./write_behind.ts";
import { deferred, fail, fakeLogger, FakeRpc, ok } from "./_fake_rpc.ts";

function setup(limitBytes?: number): {
  rpc: FakeRpc;
  wb: WriteBehind;
  logger: ReturnType<typeof fakeLogger>;
} {
  const rpc = new FakeRpc();
  const logger = fakeLogger();
  return { rpc, wb: new WriteBehind(rpc.call, { logger, limitBytes }), logger };
}

const params = (n: number, offset = 0) => ({
  handle: 1,
  offset: BigInt(offset),
  data: new Uint8Array(n),
});

Deno.test("write behind: a write is answered before the satellite answers it", async () => {
  const { rpc, wb } = setup();
  const answer = deferred<RpcResult<number>>();
  rpc.on("write", () => answer.promise);
  const file = new FileWrites("k", true);
  deepStrictEqual(await wb.write(file, params(10)), 10);
  deepStrictEqual([file.pending.size, file.pendingBytes], [1, 10]);
  answer.resolve(ok(10));
  await wb.settle([file]);
  deepStrictEqual([file.pending.size, file.pendingBytes, file.error], [0, 0, undefined]);
});

Deno.test("write behind: past the byte limit a write waits for the oldest", async () => {
  const { rpc, wb } = setup(15);
  const answers: ((r: RpcResult<number>) => void)[] = [];
  rpc.on("write", () => {
    const d = deferred<RpcResult<number>>();
    answers.push(d.resolve);
    return d.promise;
  });
  const file = new FileWrites("k", true);
  await wb.write(file, params(10));
  let second = false;
  const writing = wb.write(file, params(10, 10)).then(() => (second = true));
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(second, false);
  answers[0](ok(10));
  await writing;
  deepStrictEqual(second, true);
  answers[1](ok(10));
  await wb.settle([file]);
});

Deno.test("write behind: the first failure or short write is kept and reported once", async () => {
  const { rpc, wb } = setup();
  const results = [fail("ENOSPC"), fail("EIO"), ok(3)];
  rpc.on("write", () => results.shift()!);
  const file = new FileWrites("k", true);
  await wb.write(file, params(10));
  await wb.write(file, params(10));
  await wb.settle([file]);
  deepStrictEqual(wb.takeError([file]), ENOSPC);
  deepStrictEqual(wb.takeError([file]), undefined);
  await wb.write(file, params(10));
  await wb.settle([file]);
  deepStrictEqual(wb.takeError([file]), EIO, "short write");
});

Deno.test("write behind: settle waits for every given handle", async () => {
  const { rpc, wb } = setup();
  const answer = deferred<RpcResult<number>>();
  rpc.on("write", () => answer.promise);
  const a = new FileWrites("k", true);
  const b = new FileWrites("k", true);
  await wb.write(b, params(4));
  let settled = false;
  const settling = wb.settle([a, b]).then(() => (settled = true));
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(settled, false);
  answer.resolve(fail("EDQUOT"));
  await settling;
  deepStrictEqual(wb.takeError([a, b])?.name, "EDQUOT");
});

Deno.test("write behind: a failure left at release is logged and reported once for the inode", async () => {
  const { rpc, wb, logger } = setup();
  rpc.on("write", () => fail("ENOSPC"));
  const closed = new FileWrites("k", true);
  const other = new FileWrites("k", true);
  await wb.write(closed, params(10));
  await wb.release(closed, "/data/f");
  assert(
    logger.lines.some((l) => l.includes("/data/f") && l.includes("ENOSPC")),
    logger.lines.join(),
  );
  deepStrictEqual(wb.takeError([other]), undefined, "only when asked for the inode");
  deepStrictEqual(wb.takeError([other], "other-key"), undefined);
  deepStrictEqual(wb.takeError([other], "k"), ENOSPC);
  deepStrictEqual(wb.takeError([other], "k"), undefined);
});

Deno.test("write behind: a release after the failure was reported keeps nothing", async () => {
  const { rpc, wb, logger } = setup();
  rpc.on("write", () => fail("ENOSPC"));
  const file = new FileWrites("k", true);
  await wb.write(file, params(10));
  await wb.settle([file]);
  deepStrictEqual(wb.takeError([file]), ENOSPC);
  await wb.release(file, "/f");
  deepStrictEqual([logger.lines, wb.takeError([], "k")], [[], undefined]);
});

Deno.test("write behind: a write held in the bulk lane is answered only once it is sent", async () => {
  const { wb } = setup();
  const sent = deferred<void>();
  const answer = deferred<RpcResult<number>>();
  const rpc = {
    write: (_p: unknown, options?: CallOptions) => {
      options?.onHeld?.(sent.promise);
      return answer.promise;
    },
  } as unknown as Pick<RpcCalls, "write">;
  const file = new FileWrites("k", true);
  let answered = false;
  const write = wb.write(file, params(10), rpc).then((n) => (answered = true, n));
  await new Promise((r) => setTimeout(r, 10));
  deepStrictEqual(answered, false);
  sent.resolve();
  deepStrictEqual(await write, 10);
  answer.resolve(ok(10));
  await wb.settle([file]);
});

Deno.test("write behind: a held write that fails before it is sent is answered with its error", async () => {
  const { wb } = setup();
  const rpc = {
    write: (_p: unknown, options?: CallOptions) => {
      options?.onHeld?.(new Promise<void>(() => {})); // never sent
      return Promise.resolve(fail("EIO"));
    },
  } as unknown as Pick<RpcCalls, "write">;
  const file = new FileWrites("k", true);
  deepStrictEqual(await wb.write(file, params(10), rpc), 10);
  await wb.settle([file]);
  deepStrictEqual(wb.takeError([file]), EIO);
});

Deno.test("write behind: tracked work is waited for by settle, whether it succeeds or fails", async () => {
  const { wb } = setup();
  const file = new FileWrites("k", true);
  for (const outcome of ["resolve", "reject"] as const) {
    const work = Promise.withResolvers<number>();
    work.promise.catch(() => {}); // its owner handles it; tracking must not fail on it
    wb.track(file, work.promise);
    deepStrictEqual(file.pending.size, 1);
    let settled = false;
    const waiting = wb.settle([file]).then(() => settled = true);
    await new Promise((r) => setTimeout(r, 0));
    deepStrictEqual(settled, false, `settle waits for the tracked work (${outcome})`);
    if (outcome === "resolve") work.resolve(1);
    else work.reject(new Error("gone"));
    await waiting;
    deepStrictEqual(file.pending.size, 0);
  }
});
