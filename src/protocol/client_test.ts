// The RpcClient against an in-process fake satellite: out-of-order answers, many in flight,
// timeouts, cancellation, closing, and the handshake checks.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { errnoOf, FAKE_HELLO, fakeStat, startFake, valueOf, waitUntil } from "./_test_utils.ts";
import {
  ChangeKind,
  type Handlers,
  PROTOCOL_VERSION,
  RpcFailure,
  type RpcResult,
  type Stat,
} from "./mod.ts";

const handlers: Partial<Handlers> = {
  lstat: ({ path }) =>
    path === "missing"
      ? new RpcFailure("ENOENT")
      : fakeStat({ size: BigInt(String(path).length), ino: BigInt(String(path).length) + 1n }),
  read: ({ size, offset }) => new Uint8Array(size).fill(Number(offset & 0xffn)),
};

function shuffle<T>(items: T[], seed: number): T[] {
  let s = seed;
  for (let i = items.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

for (
  const [how, rawReadBytes] of [
    ["", undefined],
    [" (a connection read directly, frames split across reads)", 7],
    [" (a connection read directly, results left as views into its reads)", 1 << 20],
  ] as const
) {
  Deno.test(`100 calls in flight complete correctly when answered out of order${how}`, async () => {
    await hundredCalls(rawReadBytes);
  });
}

/** 100 calls answered in a shuffled order; every result checked once all are in. */
async function hundredCalls(rawReadBytes: number | undefined): Promise<void> {
  const fake = startFake(handlers, { hold: true, rawReadBytes });
  await fake.client.ready;
  const calls: Promise<RpcResult<unknown>>[] = Array.from(
    { length: 100 },
    (_, i) =>
      i % 10 === 9
        ? fake.client.call.lstat({ path: "missing" })
        : i % 2
        ? fake.client.call.read({ handle: 1, offset: BigInt(i), size: i })
        : fake.client.call.lstat({ path: "x".repeat(i) }),
  );
  await waitUntil(() => fake.received === 100, "100 requests at the fake");
  equal(fake.client.inFlight, 100);
  for (const frame of shuffle([...fake.held], 42)) await fake.send(frame);
  const results = await Promise.all(calls);
  results.forEach((r, i) => {
    if (i % 10 === 9) equal(errnoOf(r), "ENOENT");
    else if (i % 2) deepStrictEqual(valueOf(r), new Uint8Array(i).fill(i));
    else equal((valueOf(r) as Stat).size, BigInt(i));
  });
  equal(fake.client.inFlight, 0);
  await fake.client.close();
}

Deno.test("a call times out with EIO, and its late answer is ignored", async () => {
  const fake = startFake(handlers, { hold: true });
  await fake.client.ready;
  const r = await fake.client.call.lstat({ path: "a" }, { timeoutMs: 20 });
  equal(errnoOf(r), "EIO");
  ok(!r.ok && r.message.includes("timed out"));
  await fake.send(fake.held[0]); // late answer
  const next = fake.client.call.lstat({ path: "bb" });
  await waitUntil(() => fake.held.length === 2, "the second request at the fake");
  await fake.send(fake.held[1]);
  equal(valueOf(await next).size, 2n);
  await fake.client.close();
});

Deno.test("an aborted call resolves with EINTR", async () => {
  const fake = startFake(handlers, { hold: true });
  await fake.client.ready;
  const ac = new AbortController();
  const p = fake.client.call.lstat({ path: "a" }, { signal: ac.signal });
  ac.abort();
  equal(errnoOf(await p), "EINTR");
  equal(errnoOf(await fake.client.call.lstat({ path: "a" }, { signal: ac.signal })), "EINTR");
  await fake.client.close();
});

Deno.test("the end of the stream fails pending calls with EIO and reports why", async () => {
  const fake = startFake(handlers, { hold: true });
  await fake.client.ready;
  const pending = fake.client.call.lstat({ path: "a" });
  await waitUntil(() => fake.received === 1, "the request at the fake");
  await fake.end();
  const r = await pending;
  equal(errnoOf(r), "EIO");
  const info = await fake.client.closed;
  equal(info.reason, "satellite closed its output");
  equal(info.error, true);
  equal(errnoOf(await fake.client.call.lstat({ path: "a" })), "EIO");
  equal(fake.client.isClosed, true);
});

Deno.test("handshake: stale protocol, wrong build id, missing handshake", async () => {
  const stale = startFake(handlers, { hello: { ...FAKE_HELLO, protocol: PROTOCOL_VERSION + 1 } });
  await stale.client.ready.then(
    () => ok(false, "must reject"),
    (e: Error) => ok(e.message.includes("stale"), e.message),
  );
  equal((await stale.client.closed).error, true);

  const wrong = startFake(handlers, { client: { expectedBuildId: "abc" } });
  await wrong.client.ready.then(
    () => ok(false, "must reject"),
    (e: Error) => ok(e.message.includes("does not match"), e.message),
  );

  const silent = startFake(handlers, { hello: null });
  await silent.end();
  await silent.client.ready.then(
    () => ok(false, "must reject"),
    (e: Error) => ok(e.message.includes("before the handshake"), e.message),
  );

  const good = startFake(handlers, { client: { expectedBuildId: "fake" } });
  equal((await good.client.ready).buildId, "fake");
  await good.client.close();
});

Deno.test("close() ends an idle connection cleanly", async () => {
  const fake = startFake(handlers);
  await fake.client.ready;
  await fake.client.close();
  deepStrictEqual(await fake.client.closed, { reason: "closed by the client", error: false });
});

Deno.test("event frames reach onEvent in order with results; a malformed one is an overflow", async () => {
  const seen: string[] = [];
  const fake = startFake(handlers, {
    hold: true,
    client: {
      onEvent: (changes) => {
        for (const c of changes) seen.push(`${c.what}:${c.dir}:${String(c.name ?? "")}`);
      },
    },
  });
  await fake.client.ready;
  const r = fake.client.call.lstat({ path: "a" });
  await waitUntil(() => fake.held.length === 1, "the request at the fake");
  const event = fake.dispatcher.eventFrame({
    changes: [{ dir: "0:1:2", name: "x", what: ChangeKind.NAME }],
  });
  // The event comes before the answer: it is seen before the call resolves.
  const both = new Uint8Array(event.length + fake.held[0].length);
  both.set(event);
  both.set(fake.held[0], event.length);
  await fake.send(both);
  await r.then(() => seen.push("answer"));
  const junk = fake.dispatcher.eventFrame({ changes: [{ dir: 7, what: "x" }] } as never);
  await fake.send(junk);
  await waitUntil(() => seen.length === 3, "the malformed event");
  deepStrictEqual(seen, [`${ChangeKind.NAME}:0:1:2:x`, "answer", `${ChangeKind.OVERFLOW}::`]);
  ok(!fake.client.isClosed);
  await fake.client.close();
});

Deno.test("bulk lane: small calls pass 1 MiB reads held past the limit; held reads go in order", async () => {
  const MiB = 1 << 20;
  const fake = startFake(handlers, { hold: true, client: { bulkBytes: 2 * MiB } });
  await fake.client.ready;
  const held: number[] = [];
  const reads = [0, 1, 2, 3].map((i) =>
    fake.client.call.read(
      { handle: 1, offset: BigInt(i), size: MiB },
      { onHeld: (sent) => void sent.then(() => held.push(i)) },
    )
  );
  const stat = fake.client.call.lstat({ path: "abc" });
  await waitUntil(() => fake.received === 3, "two reads and the lstat at the fake");
  deepStrictEqual(fake.client.bulk, { inFlight: 2 * MiB, waiting: 2 });
  // The lstat's answer is the third frame held: answer it first.
  await fake.send(fake.held[2]);
  deepStrictEqual(valueOf(await stat).size, 3n);
  await fake.send(fake.held[0]);
  deepStrictEqual(valueOf(await reads[0])[0], 0);
  await waitUntil(() => fake.received === 4, "the third read released");
  deepStrictEqual(held, [2]);
  await fake.send(fake.held[1]);
  await fake.send(fake.held[3]);
  await waitUntil(() => fake.received === 5, "the fourth read released");
  await fake.send(fake.held[4]);
  for (const [i, r] of (await Promise.all(reads)).entries()) deepStrictEqual(valueOf(r)[0], i);
  deepStrictEqual(held, [2, 3]);
  deepStrictEqual(fake.client.bulk, { inFlight: 0, waiting: 0 });
  await fake.client.close();
});

Deno.test("bulk lane: a held call that times out never reaches the satellite", async () => {
  const MiB = 1 << 20;
  const fake = startFake(handlers, { hold: true, client: { bulkBytes: MiB } });
  await fake.client.ready;
  const first = fake.client.call.read({ handle: 1, offset: 0n, size: MiB });
  const second = await fake.client.call.read({ handle: 1, offset: 1n, size: MiB }, {
    timeoutMs: 10,
  });
  deepStrictEqual(errnoOf(second), "EIO");
  await fake.send(fake.held[0]);
  valueOf(await first);
  deepStrictEqual([fake.received, fake.client.bulk.waiting, fake.client.bulk.inFlight], [1, 0, 0]);
  await fake.client.close();
});
