// Hostile input into the protocol's decoders, in-process: random, truncated, oversized and
// mutated frames never crash or hang the frame decoder or the client; they end in a clear
// protocol error or a failed call. Seeded; the seed is printed on failure.

import { equal, ok } from "node:assert/strict";
import { createPackr, encodeFrame, FrameDecoder, isErrnoName, Kind } from "./mod.ts";
import { errnoOf, mutate, randomBytes, rng, SEED, startFake, withSeed } from "./_test_utils.ts";

withSeed("frame decoder: any chunking yields the same frames", () => {
  const rand = rng(SEED);
  const bodies = Array.from({ length: 200 }, () => randomBytes(rand, 1 + rand(3000)));
  const stream: number[] = [];
  for (const b of bodies) {
    stream.push(
      b.length >>> 24,
      (b.length >>> 16) & 255,
      (b.length >>> 8) & 255,
      b.length & 255,
      ...b,
    );
  }
  const bytes = new Uint8Array(stream);
  const decoder = new FrameDecoder();
  const got: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const n = 1 + rand(rand(2) ? 7 : 5000);
    equal(decoder.push(bytes.subarray(at, at + n), (b) => got.push(b.slice())), undefined);
    at += n;
  }
  equal(got.length, bodies.length);
  got.forEach((b, i) => ok(b.length === bodies[i].length && b.every((x, j) => x === bodies[i][j])));
  ok(decoder.idle);
});

withSeed("frame decoder: bodies read into room() are the same frames, without a copy", () => {
  const rand = rng(SEED + 1);
  const bodies = Array.from({ length: 40 }, () => randomBytes(rand, 1 + rand(200_000)));
  const stream = new Uint8Array(bodies.reduce((n, b) => n + 4 + b.length, 0));
  let w = 0;
  for (const b of bodies) {
    new DataView(stream.buffer).setUint32(w, b.length);
    stream.set(b, w + 4);
    w += 4 + b.length;
  }
  const decoder = new FrameDecoder();
  const got: Uint8Array[] = [];
  let at = 0;
  let direct = 0;
  while (at < stream.length) {
    const n = 1 + rand(rand(2) ? 7 : 70_000);
    // As a reader would: into the body's room when there is one, else a chunk of its own.
    const room = decoder.room(1024);
    const into = room ?? new Uint8Array(n);
    const filled = into.subarray(0, Math.min(n, into.length, stream.length - at));
    filled.set(stream.subarray(at, at + filled.length));
    if (room) direct++;
    equal(decoder.push(filled, (b) => got.push(b)), undefined);
    at += filled.length;
  }
  ok(direct > 0, "some reads went into a body");
  equal(got.length, bodies.length);
  got.forEach((b, i) => ok(b.length === bodies[i].length && b.every((x, j) => x === bodies[i][j])));
  ok(decoder.idle);
});

withSeed("frame decoder: zero and oversized lengths are errors that stick", () => {
  const d1 = new FrameDecoder();
  ok(d1.push(new Uint8Array([0, 0, 0, 0]), () => {})!.includes("empty"));
  const d2 = new FrameDecoder();
  let frames = 0;
  const good = new Uint8Array([0, 0, 0, 1, 0x90]);
  equal(d2.push(good, () => frames++), undefined);
  const big = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
  ok(d2.push(big, () => frames++)!.includes("exceeds the maximum"));
  ok(d2.push(good, () => frames++) !== undefined);
  equal(frames, 1);
  const d3 = new FrameDecoder();
  ok(d3.push(new TextEncoder().encode("GET / HTTP/1.1\r\n"), () => {})!.includes("GET /"));
});

withSeed("client: random and mutated frames end the connection cleanly", async () => {
  const rand = rng(SEED + 2);
  const packr = createPackr();
  for (let i = 0; i < 300; i++) {
    const fake = startFake({}, { hold: true });
    await fake.client.ready;
    const pending = fake.client.call.lstat({ path: "x" });
    const kind = rand(3);
    let bytes: Uint8Array;
    if (kind === 0) {
      bytes = randomBytes(rand, 1 + rand(40));
    } else {
      const valid = encodeFrame(packr, [
        rand(2) ? Kind.RESULT : Kind.ERROR,
        1,
        rand(2) ? { size: 1n, mode: "x" } : "ENOENT",
        "msg",
      ]);
      bytes = mutate(rand, valid);
      const n = bytes.length - 4;
      if (rand(2) && n > 0) new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, n);
    }
    await fake.send(bytes);
    await fake.end();
    // No garbage becomes a success: a valid lstat result cannot come out of these frames.
    const r = await pending;
    ok(!r.ok, `frame ${i} gave a success: ${Deno.inspect(r)}`);
    ok(isErrnoName(r.code), `frame ${i} gave the unknown errno '${r.code}'`);
    const info = await fake.client.closed;
    ok(info.reason.length > 0);
    equal(fake.client.isClosed, true);
    equal(errnoOf(await fake.client.call.lstat({ path: "y" })), "EIO");
  }
});
