/**
 * Test utilities of the protocol: an in-process fake satellite for client tests (a Dispatcher
 * over TransformStreams, with hooks to reorder, hold back or corrupt what it sends), result
 * helpers, and a deadline for polling.
 *
 * @module
 */

import type { Stat } from "./mod.ts";
import {
  Dispatcher,
  FrameDecoder,
  type Handlers,
  type Hello,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type RawConn,
  RpcClient,
  type RpcClientOptions,
  type RpcResult,
} from "./mod.ts";

/** The default handshake of the fake. */
export const FAKE_HELLO: Hello = {
  protocol: PROTOCOL_VERSION,
  buildId: "fake",
  pid: 1,
  uid: 0,
  gid: 0,
  arch: "x86_64",
  root: "/",
  maxFrameBytes: MAX_FRAME_BYTES,
};

/** A connected client and the fake's controls. */
export interface Fake {
  readonly client: RpcClient;
  readonly dispatcher: Dispatcher;
  /** Writes raw bytes to the client (as if from the satellite's stdout). */
  send(bytes: Uint8Array): Promise<void>;
  /** Ends the satellite's stdout. */
  end(): Promise<void>;
  /** Response frames held back (when `hold` is true), in arrival order. */
  readonly held: Uint8Array[];
  /** Requests received so far. */
  readonly received: number;
}

/** Options of {@link startFake}. */
export interface FakeOptions {
  hello?: Hello | null;
  /** Keep responses in `held` instead of sending them. */
  hold?: boolean;
  client?: RpcClientOptions;
  /** The client reads through a `RawConn` that gives at most this many bytes per read. */
  rawReadBytes?: number;
}

/** A `RawConn` over a pair of streams, giving at most `maxRead` bytes per read. */
function rawConnOver(
  readable: ReadableStream<Uint8Array>,
  writable: WritableStream<Uint8Array>,
  maxRead: number,
): RawConn {
  const reader = readable.getReader();
  const writer = writable.getWriter();
  let pending: Uint8Array = new Uint8Array(0);
  return {
    async read(buffer) {
      while (pending.length === 0) {
        const { value, done } = await reader.read();
        if (done) return null;
        pending = value;
      }
      const n = Math.min(buffer.length, pending.length, maxRead);
      buffer.set(pending.subarray(0, n));
      pending = pending.subarray(n);
      return n;
    },
    async write(bytes) {
      await writer.write(bytes.slice());
      return bytes.length;
    },
    closeWrite: () => writer.close().catch(() => {}),
    close() {
      writer.abort().catch(() => {});
      reader.cancel().catch(() => {});
    },
  };
}

/** Starts a fake satellite with `handlers` and a client connected to it. */
export function startFake(handlers: Partial<Handlers>, options: FakeOptions = {}): Fake {
  const toSat = new TransformStream<Uint8Array, Uint8Array>();
  const fromSat = new TransformStream<Uint8Array, Uint8Array>();
  const writer = fromSat.writable.getWriter();
  const held: Uint8Array[] = [];
  const answer = (frame: Uint8Array): void => {
    if (options.hold) held.push(frame);
    else writer.write(frame).catch(() => {});
  };
  // Late answers (handlers returning a Later) are copied: their frame may be a reused buffer.
  const dispatcher = new Dispatcher(handlers as Handlers, undefined, (f) => answer(f.slice()));
  let received = 0;
  const hello = options.hello === undefined ? FAKE_HELLO : options.hello;
  if (hello) writer.write(dispatcher.helloFrame(hello)).catch(() => {});
  (async () => {
    const decoder = new FrameDecoder();
    try {
      for await (const chunk of toSat.readable) {
        decoder.push(chunk, (body) => {
          received++;
          const r = dispatcher.handle(body);
          if (r !== undefined) answer(r instanceof Uint8Array ? r : r.frame);
        });
      }
    } catch {
      // client went away
    }
  })();
  const client = options.rawReadBytes === undefined
    ? new RpcClient(fromSat.readable, toSat.writable, options.client)
    : new RpcClient(
      rawConnOver(fromSat.readable, toSat.writable, options.rawReadBytes),
      options.client,
    );
  return {
    client,
    dispatcher,
    send: (bytes) => writer.write(bytes).catch(() => {}),
    end: () => writer.close().catch(() => {}),
    held,
    get received() {
      return received;
    },
  };
}

/** The value of a successful result; throws with the errno otherwise. */
export function valueOf<T>(result: RpcResult<T>): T {
  if (!result.ok) throw new Error(`expected success, got ${result.code}: ${result.message}`);
  return result.value;
}

/** The errno name of a failed result; throws on success. */
export function errnoOf<T>(result: RpcResult<T>): string {
  if (result.ok) throw new Error(`expected a failure, got ${Deno.inspect(result.value)}`);
  return result.code;
}

/** Polls `done` until true; throws, failing the test, once `ms` have passed without it. */
export async function waitUntil(done: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`gave up after ${ms / 1000} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** The fuzz seed: FUZZ_SEED, or one derived from the clock (printed when a test fails). */
export const SEED: number = Number(Deno.env.get("FUZZ_SEED") ?? Date.now() % 1_000_000);

/** xorshift32: deterministic from the seed; `rand(n)` is in [0, n). */
export function rng(seed: number): (n: number) => number {
  let x = seed | 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

/** `length` random bytes. */
export function randomBytes(rand: (n: number) => number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = rand(256);
  return b;
}

/** A copy of `frame` with bytes flipped, truncated, garbage inserted or a huge length marker. */
export function mutate(rand: (n: number) => number, frame: Uint8Array): Uint8Array {
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

/** Deno.test that prints the seed when it fails. */
export function withSeed(name: string, fn: () => Promise<void> | void): void {
  Deno.test(name, async () => {
    try {
      await fn();
    } catch (e) {
      console.error(`${name}: failed with FUZZ_SEED=${SEED}`);
      throw e;
    }
  });
}

/** A Stat: a regular file 0644 of 10 bytes on device 8:1 unless overridden. */
export function fakeStat(overrides: Partial<Stat> = {}): Stat {
  return {
    ino: 100n,
    mode: 0o100644,
    nlink: 1,
    uid: 0,
    gid: 0,
    rdevMajor: 0,
    rdevMinor: 0,
    devMajor: 8,
    devMinor: 1,
    size: 10n,
    blocks: 8n,
    blksize: 4096,
    atimeSec: 1,
    atimeNsec: 0,
    mtimeSec: 1,
    mtimeNsec: 0,
    ctimeSec: 1,
    ctimeNsec: 0,
    hasXattrs: false,
    ...overrides,
  };
}
