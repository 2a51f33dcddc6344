// Hostile input into both decoders: random, truncated, oversized and mutated frames never
// crash or hang either side; they end in a clear protocol error. Seeded; the seed is printed
// on failure.

import { ok as assert, strictEqual as is } from "node:assert/strict";
import {
  createPackr,
  createUnpackr,
  decodeBody,
  Dispatcher,
  encodeFrame,
  FrameDecoder,
  Kind,
  MAX_FRAME_BYTES,
  OpenFlags,
} from "../../src/protocol/mod.ts";
import { SatelliteFs } from "../../satellite/fs.ts";
import { cString, Libc } from "../../satellite/libc.ts";
import { startFake } from "./fake.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 1_000_000);
const SATELLITE = new URL("../../satellite/main.ts", import.meta.url).pathname;

/** xorshift32: deterministic from the seed. */
function rng(seed: number): (n: number) => number {
  let x = seed | 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

function randomBytes(rand: (n: number) => number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = rand(256);
  return b;
}

function mutate(rand: (n: number) => number, frame: Uint8Array): Uint8Array {
  const out = frame.slice();
  switch (rand(4)) {
    case 0: // flip bytes
      for (let k = 1 + rand(4); k > 0; k--) out[rand(out.length)] = rand(256);
      return out;
    case 1: // truncate
      return out.subarray(0, rand(out.length));
    case 2: { // insert garbage
      const at = rand(out.length);
      const junk = randomBytes(rand, 1 + rand(16));
      const r = new Uint8Array(out.length + junk.length);
      r.set(out.subarray(0, at));
      r.set(junk, at);
      r.set(out.subarray(at), at + junk.length);
      return r;
    }
    default: // huge container lengths (array32 / map32 / str32 / bin32 markers)
      out[rand(out.length)] = [0xdd, 0xdf, 0xdb, 0xc6, 0xc5][rand(5)];
      return out;
  }
}

function withSeed(name: string, fn: () => Promise<void> | void): void {
  Deno.test(name, async () => {
    try {
      await fn();
    } catch (e) {
      console.error(`${name}: failed with FUZZ_SEED=${SEED}`);
      throw e;
    }
  });
}

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
    is(decoder.push(bytes.subarray(at, at + n), (b) => got.push(b.slice())), undefined);
    at += n;
  }
  is(got.length, bodies.length);
  got.forEach((b, i) =>
    assert(b.length === bodies[i].length && b.every((x, j) => x === bodies[i][j]))
  );
  assert(decoder.idle);
});

withSeed("frame decoder: zero and oversized lengths are errors that stick", () => {
  const d1 = new FrameDecoder();
  assert(d1.push(new Uint8Array([0, 0, 0, 0]), () => {})!.includes("empty"));
  const d2 = new FrameDecoder();
  let frames = 0;
  const ok = new Uint8Array([0, 0, 0, 1, 0x90]);
  is(d2.push(ok, () => frames++), undefined);
  const big = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
  assert(d2.push(big, () => frames++)!.includes("exceeds the maximum"));
  assert(d2.push(ok, () => frames++) !== undefined);
  is(frames, 1);
  const d3 = new FrameDecoder();
  assert(d3.push(new TextEncoder().encode("GET / HTTP/1.1\r\n"), () => {})!.includes("GET /"));
});

withSeed("satellite dispatcher: random and mutated requests never throw", async () => {
  const rand = rng(SEED + 1);
  const root = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dfsat-fuzz-" });
  Deno.writeTextFileSync(`${root}/file`, "content");
  Deno.mkdirSync(`${root}/dir`);
  const libc = new Libc();
  const rootFd = libc.fn.openat(-100, cString(root)!, 0o10000000 | 0o2000000, 0);
  assert(rootFd >= 0);
  const fs = new SatelliteFs(libc, rootFd, { procFd: "/proc/self/fd" });
  const errors: string[] = [];
  const d = new Dispatcher(fs.handlers(), (m, e) => errors.push(`${m}: ${e}`));
  const packr = createPackr();
  const unpackr = createUnpackr();
  const valid = [
    [Kind.REQUEST, 1, "lstat", { path: "file" }],
    [Kind.REQUEST, 2, "open", { path: "file", flags: OpenFlags.O_RDWR }],
    [Kind.REQUEST, 3, "read", { handle: 1, offset: 0n, size: 100 }],
    [Kind.REQUEST, 4, "write", { handle: 1, offset: 3n, data: new Uint8Array([1, 2, 3]) }],
    [Kind.REQUEST, 5, "readdir", { handle: 2, offset: 0n, plus: true }],
    [Kind.REQUEST, 6, "opendir", { path: "dir" }],
    [Kind.REQUEST, 7, "mkdir", { path: "dir/x", mode: 0o755, owner: { uid: 1, gid: 1 } }],
    [Kind.REQUEST, 8, "rename", { from: "dir/x", to: "dir/y", flags: 0 }],
    [Kind.REQUEST, 9, "setxattr", {
      path: "file",
      name: "user.a",
      value: new Uint8Array(3),
      flags: 0,
    }],
    [Kind.REQUEST, 10, "utimens", { path: "file", mtime: { sec: 1, nsec: 2 } }],
  ].map((m) => encodeFrame(packr, m).slice(4));
  let fatal = 0, answered = 0;
  for (let i = 0; i < 6000; i++) {
    const body = i % 3 === 0
      ? randomBytes(rand, rand(64))
      : mutate(rand, valid[rand(valid.length)]);
    const r = d.handle(body);
    if (r instanceof Uint8Array) {
      answered++;
      const decoded = decodeBody(unpackr, r.subarray(4));
      assert(decoded.ok && (decoded.value[0] === Kind.RESULT || decoded.value[0] === Kind.ERROR));
    } else {
      fatal++;
      assert(r.fatal.length > 0);
    }
  }
  fs.closeAll();
  libc.fn.close(rootFd);
  await Deno.remove(root, { recursive: true });
  assert(fatal > 0 && answered > 0, `${fatal} fatal, ${answered} answered`);
  is(errors.length, 0, errors.join("\n"));
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
    const r = await pending;
    assert(r.ok === false || r.ok === true);
    const info = await fake.client.closed;
    assert(info.reason.length > 0);
  }
});

async function rawSatellite(input: Uint8Array[]): Promise<{ code: number; frames: unknown[][] }> {
  const root = await Deno.makeTempDir({ prefix: "dfsat-raw-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", SATELLITE, "--root", root],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  for (const chunk of input) await writer.write(chunk).catch(() => {});
  await writer.close().catch(() => {});
  const out = new Uint8Array(await new Response(child.stdout).arrayBuffer());
  const { code } = await child.status;
  await Deno.remove(root, { recursive: true });
  const frames: unknown[][] = [];
  const unpackr = createUnpackr();
  new FrameDecoder().push(out, (b) => {
    const d = decodeBody(unpackr, b);
    if (d.ok) frames.push(d.value);
  });
  return { code, frames };
}

withSeed("satellite process: oversized, garbage, non-request and truncated input", async () => {
  const packr = createPackr();
  const oversized = new Uint8Array(8);
  new DataView(oversized.buffer).setUint32(0, MAX_FRAME_BYTES + 1);
  let r = await rawSatellite([oversized]);
  is(r.code, 3);
  is(r.frames[0][0], Kind.HELLO);
  is(r.frames.at(-1)![0], Kind.FATAL);
  assert(String(r.frames.at(-1)![1]).includes("exceeds"));

  r = await rawSatellite([
    encodeFrame(packr, [Kind.REQUEST, 1, "lstat", { path: "" }]),
    new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
  ]);
  is(r.code, 3);
  is(r.frames[1][0], Kind.RESULT);
  is(r.frames.at(-1)![0], Kind.FATAL);

  r = await rawSatellite([encodeFrame(packr, [1, 2, 3])]);
  is(r.code, 3);
  is(r.frames.at(-1)![0], Kind.FATAL);

  r = await rawSatellite([
    encodeFrame(packr, [Kind.REQUEST, 7, "bogus", {}]),
    encodeFrame(packr, [Kind.REQUEST, 8, "lstat", { path: 5 }]),
  ]);
  is(r.code, 0);
  is(r.frames[1][0], Kind.ERROR);
  is(r.frames[1][2], "ENOSYS");
  is(r.frames[2][2], "EINVAL");

  const frame = encodeFrame(packr, [Kind.REQUEST, 1, "lstat", { path: "" }]);
  r = await rawSatellite([frame.subarray(0, frame.length - 2)]); // truncated, then EOF
  is(r.code, 0);
  is(r.frames.length, 1); // only the handshake
});
