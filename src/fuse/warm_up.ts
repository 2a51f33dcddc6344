/**
 * Runs a filesystem's walking paths through a Session with no kernel behind it, so that V8 has
 * compiled them (with type feedback) before the kernel's first requests. A cold `find` in a fresh
 * client took 0.31–0.34 s, the same `find` once the code was compiled 0.22–0.26 s: the difference
 * is the JIT's, paid on the user's first walk unless it is paid earlier, in idle time.
 *
 * The script is what `find` and `ls -lR` send: LOOKUP of one name under the root, then depth
 * first each directory's OPENDIR, READDIRPLUS to the end, GETATTR and LOOKUP of its first entry,
 * RELEASEDIR, and at the end BATCH_FORGET of every node entered. Replies are read only for what
 * the script needs next (node ids, handles, cookies). It knows nothing of what the filesystem is.
 *
 * @module
 */

import { ERRNO, S_IFDIR } from "../linux/mod.ts";
import {
  BATCH_FORGET_IN_SIZE,
  decodeOutHeader,
  encodeBatchForgetIn,
  encodeGetattrIn,
  encodeInHeader,
  encodeInitIn,
  encodeOpenIn,
  encodeReadIn,
  encodeReleaseIn,
  FORGET_ONE_SIZE,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_ROOT_ID,
  GETATTR_IN_SIZE,
  IN_HEADER_SIZE,
  lastDirentOffset,
  Opcode,
  OPEN_IN_SIZE,
  OUT_HEADER_SIZE,
  READ_IN_SIZE,
  RELEASE_IN_SIZE,
} from "./abi.ts";
import { type Device, type DeviceSink, joinReply } from "./device.ts";
import type { FileSystem } from "./filesystem.ts";
import type { NodeImpl } from "./nodes.ts";
import { Session, type SessionOptions } from "./session.ts";

/** Bytes a READDIRPLUS of the script asks for (what `getdents64` of 32 KiB makes the kernel ask). */
const READDIR_BYTES = 32 * 1024;
/** Nodes forgotten per BATCH_FORGET. */
const FORGET_BATCH = 256;
/** Directories visited at most (the filesystem decides what they hold). */
const MAX_DIRS = 1024;

/** What one warm-up run did. */
export interface WarmUpStats {
  /** Requests answered. */
  requests: number;
  /** Directories listed. */
  dirs: number;
  /** Entries answered in READDIRPLUS replies. */
  entries: number;
  /** Longest attribute timeout (seconds) a GETATTR was answered with. */
  attrValid: number;
}

/** A device with no kernel: the script's requests in, replies to whoever waits for them. */
class ScriptDevice implements Device {
  #sink: DeviceSink | undefined;
  readonly #waiting = new Map<bigint, (reply: Uint8Array) => void>();

  start(sink: DeviceSink): void {
    this.#sink = sink;
  }

  /** Sends `frame` as a request; resolves with (a copy of) its reply. */
  send(frame: Uint8Array, unique: bigint): Promise<Uint8Array> {
    const reply = new Promise<Uint8Array>((resolve) => this.#waiting.set(unique, resolve));
    this.#deliver(frame);
    return reply;
  }

  /** Sends `frame` as a request that gets no reply (FORGET). */
  post(frame: Uint8Array): void {
    this.#deliver(frame);
  }

  #deliver(frame: Uint8Array): void {
    const bytes = new Uint8Array(Math.max(frame.length, 4096));
    bytes.set(frame);
    this.#sink!.request(
      { bytes, view: new DataView(bytes.buffer), release: () => {} },
      frame.length,
    );
  }

  write(parts: Uint8Array[], total: number): number {
    // A copy: the session writes its next reply into the same buffer.
    const reply = joinReply(parts, total);
    const header = decodeOutHeader(new DataView(reply.buffer));
    if (header === undefined) return 0;
    const done = this.#waiting.get(header.unique);
    this.#waiting.delete(header.unique);
    done?.(reply);
    return 0;
  }

  notify(): Promise<boolean> {
    return Promise.resolve(true);
  }

  /** The kernel side goes away (as at unmount): the session ends. */
  end(): void {
    this.#sink?.end(ERRNO.ENODEV);
  }

  close(): void {}
}

/** How a warm-up shares the thread: it gives way every `sliceMs` and ends once `stop` says so. */
export interface WarmUpPace {
  /** Asked before each request: true ends the script there (the kernel needs the thread). */
  stop?: () => boolean;
  /** Milliseconds of work between turns given to the event loop (default WARM_UP_SLICE_MS). */
  sliceMs?: number;
}

/**
 * Milliseconds the script runs before it lets the event loop turn: its requests are answered
 * in microtasks, which would otherwise hold up the kernel's requests until the script ends.
 */
export const WARM_UP_SLICE_MS = 4;

/** Sends the script's requests one at a time. */
class Script {
  readonly #device: ScriptDevice;
  readonly #stop: (() => boolean) | undefined;
  readonly #sliceMs: number;
  #stopped = false;
  #unique = 1n;
  #since = performance.now();
  requests = 0;

  constructor(device: ScriptDevice, pace: WarmUpPace) {
    this.#device = device;
    this.#stop = pace.stop;
    this.#sliceMs = pace.sliceMs ?? WARM_UP_SLICE_MS;
  }

  /** True once the script must end. */
  get stopped(): boolean {
    if (!this.#stopped && this.#stop?.() === true) this.#stopped = true;
    return this.#stopped;
  }

  /** Lets the event loop turn when the script has had its slice. */
  async #pace(): Promise<void> {
    if (performance.now() - this.#since < this.#sliceMs) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.#since = performance.now();
  }

  /** A request frame: header for `opcode` on `node`, then `body` bytes written by `fill`. */
  #frame(opcode: number, node: bigint, body: number, fill?: (v: DataView) => void): {
    frame: Uint8Array;
    unique: bigint;
  } {
    const frame = new Uint8Array(IN_HEADER_SIZE + body);
    const view = new DataView(frame.buffer);
    const unique = this.#unique++;
    encodeInHeader(view, {
      len: frame.length,
      opcode,
      unique,
      nodeId: node,
      uid: 0,
      gid: 0,
      pid: 0,
    });
    fill?.(new DataView(frame.buffer, IN_HEADER_SIZE));
    return { frame, unique };
  }

  /** Sends a request; resolves with its reply (undefined for an error reply). */
  async ask(
    opcode: number,
    node: bigint,
    body: number,
    fill?: (v: DataView) => void,
  ): Promise<DataView | undefined> {
    await this.#pace();
    if (this.stopped) return undefined;
    const { frame, unique } = this.#frame(opcode, node, body, fill);
    const reply = await this.#device.send(frame, unique);
    this.requests++;
    const view = new DataView(reply.buffer, reply.byteOffset, reply.byteLength);
    const header = decodeOutHeader(view);
    return header === undefined || header.error !== 0 ? undefined : view;
  }

  /** A request that gets no reply. */
  post(opcode: number, node: bigint, body: number, fill: (v: DataView) => void): void {
    this.#device.post(this.#frame(opcode, node, body, fill).frame);
    this.requests++;
  }

  lookup(parent: bigint, name: string): Promise<DataView | undefined> {
    const bytes = new TextEncoder().encode(name + "\0");
    return this.ask(
      Opcode.LOOKUP,
      parent,
      bytes.length,
      (v) => new Uint8Array(v.buffer, v.byteOffset).set(bytes),
    );
  }
}

/**
 * Runs the script on `fs` through a session of `options` (its logger sees what the session
 * logs): LOOKUP of `name` under the root, then every directory below it depth first, sharing
 * the thread as `pace` says (stopped, it ends at the next request). Ends the session before it
 * returns.
 */
export async function warmUp<H>(
  fs: FileSystem<H>,
  name: string,
  options: SessionOptions = {},
  pace: WarmUpPace = {},
): Promise<WarmUpStats> {
  const device = new ScriptDevice();
  const session = new Session(fs, device, { ...options, debug: false });
  const script = new Script(device, pace);
  const stats: WarmUpStats = { requests: 0, dirs: 0, entries: 0, attrValid: 0 };
  session.start();
  try {
    await script.ask(Opcode.INIT, 0n, 16, (v) =>
      encodeInitIn(v, 0, {
        major: FUSE_KERNEL_VERSION,
        minor: FUSE_KERNEL_MINOR_VERSION,
        maxReadahead: 128 * 1024,
        flags: 0n,
      }));
    await session.ready;
    const top = await script.lookup(FUSE_ROOT_ID, name);
    if (top !== undefined) {
      const nodeId = top.getBigUint64(OUT_HEADER_SIZE, true);
      await walk(script, session, nodeId, stats);
      if (!script.stopped) forgetAll(script, session);
    }
  } finally {
    stats.requests = script.requests;
    device.end();
    await session.closed;
  }
  return stats;
}

/** Lists `dir` and the directories below it, depth first, as `find` does. */
async function walk<H>(
  script: Script,
  session: Session<H>,
  dir: bigint,
  stats: WarmUpStats,
): Promise<void> {
  if (stats.dirs >= MAX_DIRS || script.stopped) return;
  stats.dirs++;
  const opened = await script.ask(
    Opcode.OPENDIR,
    dir,
    OPEN_IN_SIZE,
    (v) => encodeOpenIn(v, 0, { flags: 0 }),
  );
  if (opened === undefined) return;
  const fh = opened.getBigUint64(OUT_HEADER_SIZE, true);
  let offset = 0;
  for (;;) {
    const reply = await script.ask(
      Opcode.READDIRPLUS,
      dir,
      READ_IN_SIZE,
      (v) => encodeReadIn(v, 0, { fh, offset, size: READDIR_BYTES }),
    );
    if (reply === undefined) break;
    const body = reply.getUint32(0, true) - OUT_HEADER_SIZE;
    const last = lastDirentOffset(reply, OUT_HEADER_SIZE, body, true);
    if (last <= offset) break;
    offset = last;
  }
  const node = session.nodes.get(dir);
  const children = [...(node?.children?.values() ?? [])];
  stats.entries += children.length;
  const first = children[0];
  if (first !== undefined) {
    const attr = await script.ask(
      Opcode.GETATTR,
      first.nodeId,
      GETATTR_IN_SIZE,
      (v) => encodeGetattrIn(v, 0, { flags: 0, fh: 0n }),
    );
    const valid = attr === undefined ? 0 : Number(attr.getBigUint64(OUT_HEADER_SIZE, true));
    stats.attrValid = Math.max(stats.attrValid, valid);
    await script.lookup(dir, first.name);
  }
  await script.ask(
    Opcode.RELEASEDIR,
    dir,
    RELEASE_IN_SIZE,
    (v) => encodeReleaseIn(v, 0, { fh, flags: 0, releaseFlags: 0, lockOwner: 0n }),
  );
  for (const child of children) {
    if (child.type === S_IFDIR) await walk(script, session, child.nodeId, stats);
  }
}

/** BATCH_FORGET of every node the session holds, as the kernel sends when it drops its caches. */
function forgetAll<H>(script: Script, session: Session<H>): void {
  const nodes: NodeImpl[] = session.nodes.all();
  for (let i = 0; i < nodes.length; i += FORGET_BATCH) {
    const batch = nodes.slice(i, i + FORGET_BATCH);
    script.post(
      Opcode.BATCH_FORGET,
      0n,
      BATCH_FORGET_IN_SIZE + batch.length * FORGET_ONE_SIZE,
      (v) =>
        encodeBatchForgetIn(
          v,
          0,
          batch.map((n) => n.nodeId),
          batch.map((n) => n.lookups),
        ),
    );
  }
}
