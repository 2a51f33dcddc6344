/**
 * Test doubles for the FUSE layer without a kernel: a device that takes frames from the test
 * and records replies (running the session's reader filter as the real reader does), and
 * little-endian frame builders.
 *
 * @module
 */

import { ERRNO } from "../linux/mod.ts";
import { IN_HEADER_SIZE, Opcode } from "./abi.ts";
import {
  type Device,
  type DeviceSink,
  joinReply,
  type ReaderFilter,
  type RequestFilter,
} from "./device.ts";
import type { FileSystem, Logger } from "./filesystem.ts";
import { Session, type SessionOptions } from "./session.ts";

const BUF = (1 << 20) + 8192;

/** A reply as the fake device saw it. */
export interface Reply {
  bytes: Uint8Array;
  len: number;
  error: number;
  unique: bigint;
  /** Answered by the reader filter, not by the session. */
  byFilter: boolean;
}

/** A device fed by the test; records replies and notifications. */
export class FakeDevice implements Device {
  replies: Reply[] = [];
  notifications: Uint8Array[] = [];
  /** Frames handed to the session (not answered by the filter). */
  delivered = 0;
  /** What `Device.describe` answers, when set. */
  describe: (() => string) | undefined = undefined;
  #sink: DeviceSink | undefined;
  #filter: RequestFilter | undefined;
  #ahead: RequestFilter | undefined;
  #filterReply = new DataView(new ArrayBuffer(4096));
  #failNext = 0;

  start(sink: DeviceSink): void {
    this.#sink = sink;
    // Evaluated exactly as the reader worker does: the source must be self-contained.
    if (sink.filter) this.#filter = evaluated(sink.filter);
    if (sink.ahead) this.#ahead = evaluated(sink.ahead);
  }

  /** Delivers one frame (length `length`, default the frame's). */
  send(frame: Uint8Array, length = frame.length): void {
    const bytes = new Uint8Array(BUF);
    bytes.set(frame.subarray(0, Math.min(frame.length, BUF)));
    const view = new DataView(bytes.buffer);
    // As the reader: an answer ahead is sent and the request handed on all the same.
    const early = this.#ahead?.(view, length, this.#filterReply) ?? 0;
    const n = early > 0 ? 0 : this.#filter?.(view, length, this.#filterReply) ?? 0;
    if (early > 0 || n > 0) {
      const out = new Uint8Array(this.#filterReply.buffer, 0, early || n).slice();
      this.replies.push(reply(out, true));
      if (n > 0) return;
    }
    this.delivered++;
    this.#sink!.request({ bytes, view, release() {} }, length, early > 0);
  }

  write(parts: Uint8Array[], total: number): number {
    const failed = this.#failNext;
    this.#failNext = 0;
    if (failed !== 0) return failed;
    this.replies.push(reply(joinReply(parts, total), false));
    return 0;
  }

  /** The next reply is refused with `errno` (ENOENT: the request was interrupted). */
  failNextReply(errno: number): void {
    this.#failNext = errno;
  }

  notify(message: Uint8Array<ArrayBuffer>): Promise<boolean> {
    this.notifications.push(message.slice());
    return Promise.resolve(true);
  }

  /** The kernel side goes away (unmount). */
  end(): void {
    this.#sink!.end(ERRNO.ENODEV);
  }

  close(): void {}

  /** The replies since the last call. */
  take(): Reply[] {
    const r = this.replies;
    this.replies = [];
    return r;
  }
}

function reply(bytes: Uint8Array, byFilter: boolean): Reply {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return {
    bytes,
    len: v.getUint32(0, true),
    error: v.getInt32(4, true),
    unique: v.getBigUint64(8, true),
    byFilter,
  };
}

/** A request header's fields (defaults: unique 1, root node, uid/gid 0, pid 1). */
export interface Frame {
  opcode: number;
  unique?: bigint;
  nodeId?: bigint;
  uid?: number;
  gid?: number;
  pid?: number;
  body?: Uint8Array;
}

/** A whole request: header (len = the frame's length) and body. */
export function frame(f: Frame): Uint8Array {
  const body = f.body ?? new Uint8Array(0);
  const out = new Uint8Array(IN_HEADER_SIZE + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint32(4, f.opcode, true);
  v.setBigUint64(8, f.unique ?? 1n, true);
  v.setBigUint64(16, f.nodeId ?? 1n, true);
  v.setUint32(24, f.uid ?? 0, true);
  v.setUint32(28, f.gid ?? 0, true);
  v.setUint32(32, f.pid ?? 1, true);
  out.set(body, IN_HEADER_SIZE);
  return out;
}

/** Little-endian body builder: [n, "u32"|"u64"], raw bytes, or a NUL-terminated string. */
export function body(...fields: ([number, "u32" | "u64"] | Uint8Array | string)[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    if (typeof f === "string") parts.push(new TextEncoder().encode(f + "\0"));
    else if (f instanceof Uint8Array) parts.push(f);
    else {
      const b = new Uint8Array(f[1] === "u32" ? 4 : 8);
      const v = new DataView(b.buffer);
      if (f[1] === "u32") v.setUint32(0, f[0], true);
      else v.setBigUint64(0, BigInt(f[0]), true);
      parts.push(b);
    }
  }
  return joinReply(parts, parts.reduce((a, p) => a + p.length, 0));
}

/** Opcodes that never get a reply (INTERRUPT gets one only when its target is unknown). */
export const NO_REPLY: ReadonlySet<number> = new Set([
  Opcode.FORGET,
  Opcode.BATCH_FORGET,
  Opcode.NOTIFY_REPLY,
]);

/** A logger that records warnings and errors and, optionally, the debug trace. */
export class RecordingLogger implements Logger {
  lines: string[] = [];
  traced: string[] = [];
  debug(m: string): void {
    this.traced.push(m);
  }
  info(m: string): void {
    this.lines.push(`info ${m}`);
  }
  warn(m: string): void {
    this.lines.push(`warn ${m}`);
  }
  error(m: string): void {
    this.lines.push(`error ${m}`);
  }
}

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A reader filter as the reader builds it: from its source text, in global scope. */
export function evaluated(filter: ReaderFilter): RequestFilter {
  return new Function(`return (${filter.source});`)()(filter.state);
}

/** Runs `filter` on `frame` (as `length` bytes): the reply's length (0: passed on) and bytes. */
export function runFilter(
  filter: RequestFilter,
  frame: Uint8Array,
  length = frame.length,
): [number, DataView] {
  const request = new Uint8Array(4096);
  request.set(frame);
  const reply = new DataView(new ArrayBuffer(4096));
  return [filter(new DataView(request.buffer), length, reply), reply];
}

/** A session over `fs` and a fake device, past INIT (its reply taken). */
export async function initialized<H>(
  fs: FileSystem<H>,
  options: SessionOptions = {},
): Promise<{ device: FakeDevice; session: Session<H> }> {
  const device = new FakeDevice();
  const session = new Session(fs, device, { logger: new RecordingLogger(), ...options });
  session.start();
  device.send(
    frame({ opcode: Opcode.INIT, body: body([7, "u32"], [38, "u32"], [0, "u32"], [0, "u32"]) }),
  );
  await session.ready;
  device.take();
  return { device, session };
}
