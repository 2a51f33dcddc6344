/**
 * The request loop and the opcode dispatch table.
 *
 * Invariants:
 * - The loop drains the (non-blocking) device synchronously and dispatches each request at
 *   once: it never waits for a handler before reading the next request, so many requests are
 *   in flight; replies are written in completion order. When the device is empty it waits
 *   for readiness with poll() on a worker thread.
 * - Every request except FORGET, BATCH_FORGET, INTERRUPT (when found) and NOTIFY_REPLY gets
 *   exactly one reply. Nothing a request contains can throw out of `dispatch`.
 * - A request buffer goes back to the device as soon as the handler's synchronous part has
 *   decoded (and copied) its input; WRITE data is copied out.
 *
 * @module
 */

import {
  ATTR_OUT_SIZE,
  decodeInitIn,
  decodeSetattrIn,
  direntSize,
  encodeAttrOut,
  encodeDirent,
  encodeEntryOut,
  encodeInitOut,
  encodeOpenOut,
  encodeOutHeader,
  encodeStatfsOut,
  ENTRY_OUT_SIZE,
  ERRNO,
  FATTR_ATIME,
  FATTR_ATIME_NOW,
  FATTR_CTIME,
  FATTR_FH,
  FATTR_GID,
  FATTR_KILL_SUIDGID,
  FATTR_MODE,
  FATTR_MTIME,
  FATTR_MTIME_NOW,
  FATTR_SIZE,
  FATTR_UID,
  FOPEN_CACHE_DIR,
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  FOPEN_NOFLUSH,
  FOPEN_NONSEEKABLE,
  FUSE_FSYNC_FDATASYNC,
  FUSE_GETATTR_FH,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_MIN_KERNEL_MINOR,
  FUSE_ROOT_ID,
  IN_HEADER_SIZE,
  InitFlag,
  NAME_MAX,
  NOTIFY_INVAL_ENTRY_SIZE,
  NOTIFY_INVAL_INODE_SIZE,
  NotifyCode,
  O_APPEND,
  Opcode,
  opcodeName,
  OUT_HEADER_SIZE,
  RENAME_EXCHANGE,
  S_IFMT,
  SETATTR_IN_SIZE,
  STATFS_OUT_SIZE,
  XATTR_SIZE_MAX,
} from "./abi.ts";
import type { Device, RequestBuffer } from "./device.ts";
import { Errno, errnoOf } from "./errno.ts";
import type {
  Entry,
  FileSystem,
  InitInfo,
  Logger,
  Node,
  Opened,
  RequestContext,
  Result,
  SetAttrChanges,
  StatFs,
} from "./filesystem.ts";
import { type NodeImpl, NodeTable } from "./nodes.ts";

const MiB = 1024 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Session parameters (the mount-independent part of `MountOptions`). */
export interface SessionOptions {
  entryTimeout?: number;
  attrTimeout?: number;
  negativeTimeout?: number;
  writebackCache?: boolean;
  maxWrite?: number;
  maxReadahead?: number;
  maxBackground?: number;
  /** Request slots read ahead by the device reader (default 16). */
  slots?: number;
  logger?: Logger;
  debug?: boolean;
}

/** Size of request buffers for these options: max_write + 8 KiB (smaller reads fail). */
export function requestBufferSize(options: SessionOptions): number {
  return Math.max(4096, Math.min(MiB, options.maxWrite ?? MiB)) + 8192;
}

/** One request in flight; it is also the `RequestContext` given to the implementation. */
class Request implements RequestContext {
  readonly unique: bigint;
  readonly opcode: number;
  readonly nodeId: bigint;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** The read buffer (valid until released) and the body's place in it. */
  bytes: Uint8Array;
  view: DataView;
  readonly bodyOffset: number;
  readonly bodyLength: number;
  replied = false;
  #controller: AbortController | undefined;
  #interrupted = false;

  constructor(
    bytes: Uint8Array,
    view: DataView,
    length: number,
    opcode: number,
    unique: bigint,
  ) {
    this.bytes = bytes;
    this.view = view;
    this.opcode = opcode;
    this.unique = unique;
    this.nodeId = view.getBigUint64(16, true);
    this.uid = view.getUint32(24, true);
    this.gid = view.getUint32(28, true);
    this.pid = view.getUint32(32, true);
    this.bodyOffset = IN_HEADER_SIZE;
    this.bodyLength = length - IN_HEADER_SIZE;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#interrupted) this.#controller.abort(new Errno(4, "EINTR"));
    }
    return this.#controller.signal;
  }

  interrupt(): void {
    this.#interrupted = true;
    this.#controller?.abort(new Errno(4, "EINTR"));
  }
}

type Handler = (req: Request) => void | Promise<void>;

const noopLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Serves one FUSE connection: reads requests from `device`, answers them from `fs`. */
export class Session<H = unknown> {
  readonly nodes: NodeTable;
  /** Resolves once INIT was answered (rejects if INIT was refused or the device closed). */
  readonly ready: Promise<void>;
  /** Resolves when the loop ended (device gone); never rejects. */
  readonly closed: Promise<void>;

  #fs: FileSystem<H>;
  #device: Device;
  #log: Logger;
  #debug: boolean;
  #entryTimeout: number;
  #attrTimeout: number;
  #negativeTimeout: number;
  #writeback: boolean;
  #maxWrite: number;
  #maxReadahead: number;
  #maxBackground: number;
  #scratch: Uint8Array<ArrayBuffer>;
  #scratchView: DataView;
  #inflight = new Map<bigint, Request>();
  #handles = new Map<bigint, H>();
  #nextHandle = 1n;
  #table: (Handler | undefined)[] = [];
  #initialized = false;
  /** Applied to open flags given to the implementation (drops O_APPEND in writeback mode). */
  #openFlagMask = ~0;
  #ended = false;
  #destroyed = false;
  #proto = FUSE_KERNEL_MINOR_VERSION;
  #readyResolve!: () => void;
  #readyReject!: (e: Error) => void;
  #closedResolve!: () => void;
  #started = false;

  constructor(fs: FileSystem<H>, device: Device, options: SessionOptions = {}) {
    this.#fs = fs;
    this.#device = device;
    this.#log = options.logger ?? noopLogger;
    this.#debug = options.debug ?? false;
    this.#entryTimeout = options.entryTimeout ?? 1;
    this.#attrTimeout = options.attrTimeout ?? 1;
    this.#negativeTimeout = options.negativeTimeout ?? 0;
    this.#writeback = options.writebackCache ?? false;
    this.#maxWrite = Math.max(4096, Math.min(MiB, options.maxWrite ?? MiB));
    this.#maxReadahead = Math.max(0, Math.min(MiB, options.maxReadahead ?? MiB));
    this.#maxBackground = Math.max(1, Math.min(65535, options.maxBackground ?? 64));
    this.#scratch = new Uint8Array(64 * 1024);
    this.#scratchView = new DataView(this.#scratch.buffer);
    this.nodes = new NodeTable();
    this.ready = new Promise<void>((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    this.ready.catch(() => {});
    this.closed = new Promise<void>((resolve) => this.#closedResolve = resolve);
    this.#buildTable();
  }

  /** Number of requests being handled. */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /** Starts serving: the device delivers requests to `dispatch` (once). */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#device.start({
      request: (buffer, length) => this.dispatch(buffer, length),
      end: (code) => {
        if (code !== ERRNO.ENODEV) this.#log.warn(`FUSE device read failed: ${errnoOf(code).name}`);
        this.#finish();
      },
    });
  }

  async #finish(): Promise<void> {
    this.#ended = true;
    if (!this.#initialized) this.#readyReject(new Error("the FUSE connection ended before INIT"));
    await this.#destroy();
    try {
      this.#device.close();
    } catch { /* already closed */ }
    this.#closedResolve();
  }

  async #destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      await this.#fs.destroy?.();
    } catch (error) {
      this.#log.error(`FUSE filesystem destroy failed: ${error}`);
    }
  }

  /**
   * Handles one request of `length` bytes in `buf` (exposed for tests; the loop calls it).
   * Never throws.
   */
  dispatch(buf: RequestBuffer, length: number): void {
    let req: Request | undefined;
    try {
      const view = buf.view;
      if (length < IN_HEADER_SIZE || length > buf.bytes.length) {
        this.#log.warn(`FUSE: dropped a ${length}-byte request (shorter than its header)`);
        buf.release();
        return;
      }
      const len = view.getUint32(0, true);
      const opcode = view.getUint32(4, true);
      const unique = view.getBigUint64(8, true);
      req = new Request(buf.bytes, view, length, opcode, unique);
      if (this.#debug) {
        this.#log.debug(
          `rx ${unique} ${
            opcodeName(opcode)
          } node=${req.nodeId} len=${length} uid=${req.uid} pid=${req.pid}`,
        );
      }
      if (len !== length) {
        this.#log.warn(`FUSE: request ${unique} says ${len} bytes but has ${length}`);
        this.#replyError(req, ERRNO.EINVAL);
        buf.release();
        return;
      }
      if (opcode === Opcode.FORGET || opcode === Opcode.BATCH_FORGET) {
        this.#forget(req);
        buf.release();
        return;
      }
      if (opcode === Opcode.INTERRUPT) {
        this.#interrupt(req);
        buf.release();
        return;
      }
      if (opcode === Opcode.NOTIFY_REPLY) {
        buf.release();
        return;
      }
      if (!this.#initialized && opcode !== Opcode.INIT) {
        this.#replyError(req, ERRNO.EIO);
        buf.release();
        return;
      }
      const handler = this.#table[opcode];
      if (!handler) {
        this.#replyError(req, ERRNO.ENOSYS);
        buf.release();
        return;
      }
      this.#inflight.set(unique, req);
      const r = req;
      let pending: void | Promise<void> = undefined;
      try {
        pending = handler(req);
      } catch (error) {
        this.#fail(req, error);
      }
      // Handlers decode (and copy) everything they need synchronously.
      buf.release();
      if (pending instanceof Promise) pending.catch((error) => this.#fail(r, error));
    } catch (error) {
      // Only a bug in the layer gets here; keep serving.
      this.#log.error(`FUSE: internal error on a request: ${error}`);
      if (req && !req.replied) this.#replyError(req, ERRNO.EIO);
      buf.release();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Replies

  #fail(req: Request, error: unknown): void {
    if (req.replied) return;
    if (error instanceof Errno) {
      this.#replyError(req, error.code);
      return;
    }
    this.#log.error(
      `FUSE ${opcodeName(req.opcode)} (request ${req.unique}) failed: ${
        (error as Error)?.stack ?? error
      }`,
    );
    this.#replyError(req, ERRNO.EIO);
  }

  #replyError(req: Request, code: number): void {
    if (req.replied) return;
    req.replied = true;
    this.#inflight.delete(req.unique);
    const s = this.#scratchView;
    encodeOutHeader(s, OUT_HEADER_SIZE, -code, req.unique);
    if (this.#debug) this.#log.debug(`tx ${req.unique} ${errnoOf(code).name}`);
    this.#write(req, [this.#scratch.subarray(0, OUT_HEADER_SIZE)], OUT_HEADER_SIZE);
  }

  /** Makes sure the scratch buffer holds `size` bytes. */
  #scratchFor(size: number): DataView {
    if (this.#scratch.length < size) {
      this.#scratch = new Uint8Array(Math.max(size, this.#scratch.length * 2));
      this.#scratchView = new DataView(this.#scratch.buffer);
    }
    return this.#scratchView;
  }

  /** Sends the reply whose body was encoded at scratch[16 .. 16 + bodyLength]. */
  #replyScratch(req: Request, bodyLength: number): number {
    if (req.replied) return 0;
    req.replied = true;
    this.#inflight.delete(req.unique);
    const total = OUT_HEADER_SIZE + bodyLength;
    encodeOutHeader(this.#scratchView, total, 0, req.unique);
    if (this.#debug) this.#log.debug(`tx ${req.unique} OK ${total}`);
    return this.#write(req, [this.#scratch.subarray(0, total)], total);
  }

  /** Sends a header plus `data` (no copy of the data). */
  #replyData(req: Request, data: Uint8Array): number {
    if (req.replied) return 0;
    req.replied = true;
    this.#inflight.delete(req.unique);
    const total = OUT_HEADER_SIZE + data.length;
    encodeOutHeader(this.#scratchView, total, 0, req.unique);
    if (this.#debug) this.#log.debug(`tx ${req.unique} OK ${total}`);
    const header = this.#scratch.subarray(0, OUT_HEADER_SIZE);
    return this.#write(req, data.length ? [header, data] : [header], total);
  }

  /** Writes; returns 0 or errno. ENOENT means the kernel gave up on the request. */
  #write(req: Request, parts: Uint8Array[], total: number): number {
    const e = this.#device.write(parts, total);
    if (e !== 0 && e !== ERRNO.ENOENT && !this.#ended) {
      this.#log.warn(`FUSE: reply to request ${req.unique} failed: ${errnoOf(e).name}`);
    }
    return e;
  }

  /** Runs `ok` with the value, or replies with the errno / EIO for a thrown error. */
  #then<T>(req: Request, result: Result<T>, ok: (value: T) => void): void | Promise<void> {
    if (result instanceof Promise) {
      return result.then((v) => this.#settle(req, v, ok), (e) => this.#fail(req, e));
    }
    this.#settle(req, result, ok);
  }

  #settle<T>(req: Request, value: T | Errno, ok: (value: T) => void): void {
    if (value instanceof Errno) {
      this.#replyError(req, value.code);
      return;
    }
    try {
      ok(value);
    } catch (error) {
      this.#fail(req, error);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Decoding helpers (all return an errno number on bad input)

  #node(req: Request, nodeId: bigint = req.nodeId): NodeImpl | number {
    return this.nodes.get(nodeId) ?? ERRNO.ENOENT;
  }

  /** A NUL-terminated name at body offset `at`; returns [name, offset after NUL] or an errno. */
  #name(req: Request, at: number, isName = true): [string, number] | number {
    const start = req.bodyOffset + at;
    const end = req.bodyOffset + req.bodyLength;
    if (start > end) return ERRNO.EINVAL;
    const nul = req.bytes.indexOf(0, start);
    if (nul < 0 || nul >= end) return ERRNO.EINVAL;
    if (isName && nul - start > NAME_MAX) return ERRNO.ENAMETOOLONG;
    let s: string;
    try {
      s = utf8.decode(req.bytes.subarray(start, nul));
    } catch {
      return ERRNO.EILSEQ;
    }
    if (isName && (s === "" || s === "." || s === ".." || s.includes("/"))) return ERRNO.EINVAL;
    return [s, nul + 1 - req.bodyOffset];
  }

  #u64(req: Request, at: number): number {
    const v = req.view.getBigUint64(req.bodyOffset + at, true);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(v);
  }

  #handle(fh: bigint): H | undefined {
    return this.#handles.get(fh);
  }

  #addHandle(h: H): bigint {
    const fh = this.#nextHandle++;
    this.#handles.set(fh, h);
    return fh;
  }

  #openFlags(o: Opened<H>): number {
    return (o.directIo ? FOPEN_DIRECT_IO : 0) | (o.keepCache ? FOPEN_KEEP_CACHE : 0) |
      (o.nonSeekable ? FOPEN_NONSEEKABLE : 0) | (o.cacheDir ? FOPEN_CACHE_DIR : 0) |
      (o.noFlush ? FOPEN_NOFLUSH : 0);
  }

  /** Encodes an entry reply, records the lookup, sends; undoes the lookup if the kernel gave up. */
  #encodeEntry(parent: NodeImpl, name: string, entry: Entry, extra = 0): NodeImpl {
    const s = this.#scratchFor(OUT_HEADER_SIZE + ENTRY_OUT_SIZE + extra);
    const attr = entry.attr;
    encodeEntryOut(
      s,
      OUT_HEADER_SIZE,
      0n,
      entry.generation ?? 0,
      entry.entryTimeout ?? this.#entryTimeout,
      entry.attrTimeout ?? this.#attrTimeout,
      attr,
    );
    const node = this.nodes.enter(parent, name, entry.key ?? String(attr.ino), attr.ino, attr.mode);
    s.setBigUint64(OUT_HEADER_SIZE, node.nodeId, true);
    if (entry.noXattrs) this.#quickNoXattrs(node.nodeId, entry.attrTimeout ?? this.#attrTimeout);
    return node;
  }

  /** Lets the reader answer GETXATTR on `nodeId` for `seconds` (0: stop); not when tracing. */
  #quickNoXattrs(nodeId: bigint, seconds: number): void {
    if (this.#debug || !this.#device.quickNoXattrs) return;
    if (seconds > 0) this.#device.quickNoXattrs(nodeId, Date.now() + seconds * 1000);
    else this.#device.quickNoXattrs(nodeId, 0);
  }

  #sendEntry(req: Request, node: NodeImpl, bodyLength: number): void {
    const e = this.#replyScratch(req, bodyLength);
    if (e === ERRNO.ENOENT) this.#dropLookup(node);
  }

  #dropLookup(node: NodeImpl): void {
    const dropped = this.nodes.forget(node.nodeId, 1);
    if (dropped) this.#fs.forget?.(dropped);
  }

  // -------------------------------------------------------------------------------------------
  // Notifications (unique 0)

  /** FUSE_NOTIFY_INVAL_ENTRY for (parent, name); true if the kernel accepted it. */
  invalidateEntry(parent: Node, name: string): Promise<boolean> {
    const nameBytes = utf8Encoder.encode(name);
    const total = OUT_HEADER_SIZE + NOTIFY_INVAL_ENTRY_SIZE + nameBytes.length + 1;
    const buf = new Uint8Array(total);
    const v = new DataView(buf.buffer);
    encodeOutHeader(v, total, NotifyCode.INVAL_ENTRY, 0n);
    v.setBigUint64(16, parent.nodeId, true);
    v.setUint32(24, nameBytes.length, true);
    buf.set(nameBytes, 32);
    return this.#ended ? Promise.resolve(false) : this.#device.notify(buf);
  }

  /** FUSE_NOTIFY_INVAL_INODE; offset -1 = attributes only, length 0 = to the end. */
  invalidateInode(node: Node, offset = 0, length = 0): Promise<boolean> {
    const total = OUT_HEADER_SIZE + NOTIFY_INVAL_INODE_SIZE;
    const buf = new Uint8Array(total);
    const v = new DataView(buf.buffer);
    encodeOutHeader(v, total, NotifyCode.INVAL_INODE, 0n);
    v.setBigUint64(16, node.nodeId, true);
    v.setBigInt64(24, BigInt(offset), true);
    v.setBigInt64(32, BigInt(length), true);
    return this.#ended ? Promise.resolve(false) : this.#device.notify(buf);
  }

  // -------------------------------------------------------------------------------------------
  // Requests without replies

  #forget(req: Request): void {
    const v = req.view;
    const o = req.bodyOffset;
    if (req.opcode === Opcode.FORGET) {
      if (req.bodyLength < 8) return;
      const n = v.getBigUint64(o, true);
      this.#forgetOne(req.nodeId, n);
      return;
    }
    if (req.bodyLength < 8) return;
    const count = v.getUint32(o, true);
    const max = Math.floor((req.bodyLength - 8) / 16);
    if (count > max) this.#log.warn(`FUSE: BATCH_FORGET claims ${count} entries, has ${max}`);
    for (let i = 0; i < Math.min(count, max); i++) {
      const at = o + 8 + i * 16;
      this.#forgetOne(v.getBigUint64(at, true), v.getBigUint64(at + 8, true));
    }
  }

  #forgetOne(nodeId: bigint, count: bigint): void {
    const n = count > 0xffffffffn ? 0xffffffff : Number(count);
    const dropped = this.nodes.forget(nodeId, n);
    if (dropped) {
      try {
        this.#fs.forget?.(dropped);
      } catch (error) {
        this.#log.error(`FUSE filesystem forget failed: ${error}`);
      }
    }
  }

  #interrupt(req: Request): void {
    if (req.bodyLength < 8) return;
    const target = req.view.getBigUint64(req.bodyOffset, true);
    const victim = this.#inflight.get(target);
    if (victim) {
      victim.interrupt();
      return;
    }
    // Not (yet) seen: EAGAIN makes the kernel queue the interrupt again.
    this.#inflight.delete(req.unique);
    if (!this.#ended) this.#replyError(req, ERRNO.EAGAIN);
  }

  // -------------------------------------------------------------------------------------------
  // INIT

  async #init(req: Request): Promise<void> {
    const init = decodeInitIn(req.view, req.bodyOffset, req.bodyLength);
    if (!init) return this.#replyError(req, ERRNO.EINVAL);
    if (init.major > FUSE_KERNEL_VERSION) {
      // The kernel retries with our major version after this short reply.
      const s = this.#scratchFor(OUT_HEADER_SIZE + 8);
      s.setUint32(OUT_HEADER_SIZE, FUSE_KERNEL_VERSION, true);
      s.setUint32(OUT_HEADER_SIZE + 4, FUSE_KERNEL_MINOR_VERSION, true);
      this.#replyScratch(req, 8);
      return;
    }
    if (init.major < FUSE_KERNEL_VERSION || init.minor < FUSE_MIN_KERNEL_MINOR) {
      this.#log.error(
        `FUSE: kernel protocol ${init.major}.${init.minor} is too old (need 7.${FUSE_MIN_KERNEL_MINOR})`,
      );
      this.#replyError(req, ERRNO.EPROTO);
      this.#readyReject(new Error(`kernel FUSE protocol ${init.major}.${init.minor} is too old`));
      return;
    }
    this.#proto = Math.min(init.minor, FUSE_KERNEL_MINOR_VERSION);
    let want = InitFlag.ASYNC_READ | InitFlag.ATOMIC_O_TRUNC | InitFlag.BIG_WRITES |
      InitFlag.AUTO_INVAL_DATA | InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO |
      InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES | InitFlag.ASYNC_DIO;
    if (this.#writeback) want |= InitFlag.WRITEBACK_CACHE;
    const flags = want & init.flags;
    const maxReadahead = Math.min(this.#maxReadahead, init.maxReadahead);
    const info: InitInfo = {
      kernelMajor: init.major,
      kernelMinor: init.minor,
      kernelFlags: init.flags,
      flags,
      maxWrite: this.#maxWrite,
      maxReadahead,
      writebackCache: (flags & InitFlag.WRITEBACK_CACHE) !== 0n,
    };
    // With the writeback cache the kernel positions O_APPEND writes itself (and writes pages
    // back through any handle): implementations must not append on their own.
    if (info.writebackCache) this.#openFlagMask = ~O_APPEND;
    try {
      await this.#fs.init?.(info);
    } catch (error) {
      this.#log.error(`FUSE filesystem init failed: ${error}`);
      this.#replyError(req, ERRNO.EIO);
      this.#readyReject(new Error(`filesystem init failed: ${error}`));
      return;
    }
    const s = this.#scratchFor(OUT_HEADER_SIZE + 64);
    this.#scratch.fill(0, OUT_HEADER_SIZE, OUT_HEADER_SIZE + 64);
    encodeInitOut(s, OUT_HEADER_SIZE, {
      major: FUSE_KERNEL_VERSION,
      minor: this.#proto,
      maxReadahead,
      flags,
      maxBackground: this.#maxBackground,
      congestionThreshold: Math.max(1, Math.floor(this.#maxBackground * 3 / 4)),
      maxWrite: this.#maxWrite,
      timeGran: 1,
      maxPages: Math.ceil(this.#maxWrite / 4096),
    });
    this.#initialized = true;
    const e = this.#replyScratch(req, 64);
    if (e !== 0) {
      this.#readyReject(new Error(`INIT reply failed: ${errnoOf(e).name}`));
      return;
    }
    if (this.#debug) {
      this.#log.debug(
        `FUSE: kernel 7.${init.minor}, agreed 7.${this.#proto}, flags 0x${flags.toString(16)}`,
      );
    }
    this.#readyResolve();
  }

  // -------------------------------------------------------------------------------------------
  // The dispatch table

  #buildTable(): void {
    const t = this.#table;
    const fs = this.#fs;
    t[Opcode.INIT] = (req) => this.#init(req);
    t[Opcode.DESTROY] = async (req) => {
      await this.#destroy();
      this.#replyScratch(req, 0);
    };

    t[Opcode.LOOKUP] = (req) => {
      const parent = this.#node(req);
      if (typeof parent === "number") return this.#replyError(req, parent);
      const nm = this.#name(req, 0);
      if (typeof nm === "number") return this.#replyError(req, nm);
      const name = nm[0];
      if (!fs.lookup) return this.#replyError(req, ERRNO.ENOSYS);
      const result = fs.lookup(req, parent, name);
      const ok = (entry: Entry) => {
        const node = this.#encodeEntry(parent, name, entry);
        this.#sendEntry(req, node, ENTRY_OUT_SIZE);
      };
      if (result instanceof Promise) {
        return result.then(
          (v) => this.#lookupDone(req, parent, name, v, ok),
          (e) => this.#fail(req, e),
        );
      }
      this.#lookupDone(req, parent, name, result, ok);
    };

    t[Opcode.GETATTR] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 16) return this.#replyError(req, ERRNO.EINVAL);
      const flags = req.view.getUint32(req.bodyOffset, true);
      const handle = (flags & FUSE_GETATTR_FH) !== 0
        ? this.#handle(req.view.getBigUint64(req.bodyOffset + 8, true))
        : undefined;
      if (!fs.getattr) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.getattr(req, node, handle), (a) => {
        const s = this.#scratchFor(OUT_HEADER_SIZE + ATTR_OUT_SIZE);
        encodeAttrOut(s, OUT_HEADER_SIZE, a.timeout ?? this.#attrTimeout, a.attr);
        node.ino = a.attr.ino;
        if (a.noXattrs) this.#quickNoXattrs(node.nodeId, a.timeout ?? this.#attrTimeout);
        this.#replyScratch(req, ATTR_OUT_SIZE);
      });
    };

    t[Opcode.SETATTR] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      const inp = decodeSetattrIn(req.view, req.bodyOffset, req.bodyLength);
      if (!inp || req.bodyLength < SETATTR_IN_SIZE) return this.#replyError(req, ERRNO.EINVAL);
      const c: SetAttrChanges = {};
      const v = inp.valid;
      if (v & FATTR_MODE) c.mode = inp.mode & 0o7777;
      if (v & FATTR_UID) c.uid = inp.uid;
      if (v & FATTR_GID) c.gid = inp.gid;
      if (v & FATTR_SIZE) {
        if (inp.size > BigInt(Number.MAX_SAFE_INTEGER)) {
          return this.#replyError(req, 27 /* EFBIG */);
        }
        c.size = Number(inp.size);
      }
      if (v & FATTR_ATIME_NOW) c.atime = "now";
      else if (v & FATTR_ATIME) {
        c.atime = { sec: Number(BigInt.asIntN(64, inp.atime)), nsec: inp.atimensec };
      }
      if (v & FATTR_MTIME_NOW) c.mtime = "now";
      else if (v & FATTR_MTIME) {
        c.mtime = { sec: Number(BigInt.asIntN(64, inp.mtime)), nsec: inp.mtimensec };
      }
      if (v & FATTR_CTIME) {
        c.ctime = { sec: Number(BigInt.asIntN(64, inp.ctime)), nsec: inp.ctimensec };
      }
      if (v & FATTR_KILL_SUIDGID) c.killSuidgid = true;
      const handle = (v & FATTR_FH) !== 0 ? this.#handle(inp.fh) : undefined;
      if (!fs.setattr) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.setattr(req, node, c, handle), (a) => {
        const s = this.#scratchFor(OUT_HEADER_SIZE + ATTR_OUT_SIZE);
        encodeAttrOut(s, OUT_HEADER_SIZE, a.timeout ?? this.#attrTimeout, a.attr);
        this.#replyScratch(req, ATTR_OUT_SIZE);
      });
    };

    t[Opcode.READLINK] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (!fs.readlink) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.readlink(req, node), (target) => {
        this.#replyData(req, utf8Encoder.encode(target));
      });
    };

    const entryOp = (
      req: Request,
      parent: NodeImpl,
      name: string,
      result: Result<Entry>,
    ): void | Promise<void> =>
      this.#then(req, result, (entry) => {
        const node = this.#encodeEntry(parent, name, entry);
        this.#sendEntry(req, node, ENTRY_OUT_SIZE);
      });

    t[Opcode.SYMLINK] = (req) => {
      const parent = this.#node(req);
      if (typeof parent === "number") return this.#replyError(req, parent);
      const nm = this.#name(req, 0);
      if (typeof nm === "number") return this.#replyError(req, nm);
      const tg = this.#name(req, nm[1], false);
      if (typeof tg === "number") return this.#replyError(req, tg);
      if (!fs.symlink) return this.#replyError(req, ERRNO.ENOSYS);
      return entryOp(req, parent, nm[0], fs.symlink(req, parent, nm[0], tg[0]));
    };

    t[Opcode.MKNOD] = (req) => {
      const parent = this.#node(req);
      if (typeof parent === "number") return this.#replyError(req, parent);
      if (req.bodyLength < 16) return this.#replyError(req, ERRNO.EINVAL);
      const v = req.view, o = req.bodyOffset;
      const nm = this.#name(req, 16);
      if (typeof nm === "number") return this.#replyError(req, nm);
      if (!fs.mknod) return this.#replyError(req, ERRNO.ENOSYS);
      return entryOp(
        req,
        parent,
        nm[0],
        fs.mknod(
          req,
          parent,
          nm[0],
          v.getUint32(o, true),
          v.getUint32(o + 4, true),
          v.getUint32(o + 8, true),
        ),
      );
    };

    t[Opcode.MKDIR] = (req) => {
      const parent = this.#node(req);
      if (typeof parent === "number") return this.#replyError(req, parent);
      if (req.bodyLength < 8) return this.#replyError(req, ERRNO.EINVAL);
      const v = req.view, o = req.bodyOffset;
      const nm = this.#name(req, 8);
      if (typeof nm === "number") return this.#replyError(req, nm);
      if (!fs.mkdir) return this.#replyError(req, ERRNO.ENOSYS);
      return entryOp(
        req,
        parent,
        nm[0],
        fs.mkdir(req, parent, nm[0], v.getUint32(o, true), v.getUint32(o + 4, true)),
      );
    };

    const removeOp = (req: Request, rmdir: boolean): void | Promise<void> => {
      const parent = this.#node(req);
      if (typeof parent === "number") return this.#replyError(req, parent);
      const nm = this.#name(req, 0);
      if (typeof nm === "number") return this.#replyError(req, nm);
      const op = rmdir ? fs.rmdir : fs.unlink;
      if (!op) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, op.call(fs, req, parent, nm[0]), () => {
        this.nodes.removeName(parent, nm[0]);
        this.#replyScratch(req, 0);
      });
    };
    t[Opcode.UNLINK] = (req) => removeOp(req, false);
    t[Opcode.RMDIR] = (req) => removeOp(req, true);

    const renameOp = (req: Request, v2: boolean): void | Promise<void> => {
      const parent = this.#node(req);
      if (typeof parent === "number") return this.#replyError(req, parent);
      const head = v2 ? 16 : 8;
      if (req.bodyLength < head) return this.#replyError(req, ERRNO.EINVAL);
      const newDir = req.view.getBigUint64(req.bodyOffset, true);
      const flags = v2 ? req.view.getUint32(req.bodyOffset + 8, true) : 0;
      const newParent = this.#node(req, newDir);
      if (typeof newParent === "number") return this.#replyError(req, newParent);
      const a = this.#name(req, head);
      if (typeof a === "number") return this.#replyError(req, a);
      const b = this.#name(req, a[1]);
      if (typeof b === "number") return this.#replyError(req, b);
      if (!fs.rename) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.rename(req, parent, a[0], newParent, b[0], flags), () => {
        this.nodes.rename(parent, a[0], newParent, b[0], (flags & RENAME_EXCHANGE) !== 0);
        this.#replyScratch(req, 0);
      });
    };
    t[Opcode.RENAME] = (req) => renameOp(req, false);
    t[Opcode.RENAME2] = (req) => renameOp(req, true);

    t[Opcode.LINK] = (req) => {
      const newParent = this.#node(req);
      if (typeof newParent === "number") return this.#replyError(req, newParent);
      if (req.bodyLength < 8) return this.#replyError(req, ERRNO.EINVAL);
      const old = this.#node(req, req.view.getBigUint64(req.bodyOffset, true));
      if (typeof old === "number") return this.#replyError(req, old);
      const nm = this.#name(req, 8);
      if (typeof nm === "number") return this.#replyError(req, nm);
      if (!fs.link) return this.#replyError(req, ERRNO.ENOSYS);
      return entryOp(req, newParent, nm[0], fs.link(req, old, newParent, nm[0]));
    };

    const openOp = (req: Request, dir: boolean): void | Promise<void> => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 8) return this.#replyError(req, ERRNO.EINVAL);
      const flags = req.view.getUint32(req.bodyOffset, true) & this.#openFlagMask;
      const op = dir ? fs.opendir : fs.open;
      if (!op) {
        if (!dir) return this.#replyError(req, ERRNO.ENOSYS);
        const s = this.#scratchFor(OUT_HEADER_SIZE + 16);
        encodeOpenOut(s, OUT_HEADER_SIZE, 0n, 0);
        this.#replyScratch(req, 16);
        return;
      }
      return this.#then(req, op.call(fs, req, node, flags), (o) => {
        const fh = this.#addHandle(o.handle);
        const s = this.#scratchFor(OUT_HEADER_SIZE + 16);
        encodeOpenOut(s, OUT_HEADER_SIZE, fh, this.#openFlags(o));
        if (this.#replyScratch(req, 16) === ERRNO.ENOENT) this.#handles.delete(fh);
      });
    };
    t[Opcode.OPEN] = (req) => openOp(req, false);
    t[Opcode.OPENDIR] = (req) => openOp(req, true);

    t[Opcode.CREATE] = (req) => {
      const parent = this.#node(req);
      if (typeof parent === "number") return this.#replyError(req, parent);
      if (req.bodyLength < 16) return this.#replyError(req, ERRNO.EINVAL);
      const v = req.view, o = req.bodyOffset;
      const nm = this.#name(req, 16);
      if (typeof nm === "number") return this.#replyError(req, nm);
      if (!fs.create) return this.#replyError(req, ERRNO.ENOSYS);
      const r = fs.create(
        req,
        parent,
        nm[0],
        v.getUint32(o + 4, true),
        v.getUint32(o, true) & this.#openFlagMask,
        v.getUint32(o + 8, true),
      );
      return this.#then(req, r, (c) => {
        const node = this.#encodeEntry(parent, nm[0], c.entry, 16);
        const fh = this.#addHandle(c.handle);
        encodeOpenOut(this.#scratchView, OUT_HEADER_SIZE + ENTRY_OUT_SIZE, fh, this.#openFlags(c));
        const e = this.#replyScratch(req, ENTRY_OUT_SIZE + 16);
        if (e === ERRNO.ENOENT) {
          this.#handles.delete(fh);
          this.#dropLookup(node);
        }
      });
    };

    t[Opcode.READ] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 24) return this.#replyError(req, ERRNO.EINVAL);
      const fh = req.view.getBigUint64(req.bodyOffset, true);
      const offset = this.#u64(req, 8);
      const size = req.view.getUint32(req.bodyOffset + 16, true);
      if (offset < 0) return this.#replyError(req, ERRNO.EINVAL);
      if (!fs.read) return this.#replyError(req, ERRNO.ENOSYS);
      const handle = this.#handle(fh) as H;
      return this.#then(req, fs.read(req, node, handle, offset, Math.min(size, 64 * MiB)), (d) => {
        this.#replyData(req, d.length > size ? d.subarray(0, size) : d);
      });
    };

    t[Opcode.WRITE] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 40) return this.#replyError(req, ERRNO.EINVAL);
      const v = req.view, o = req.bodyOffset;
      const fh = v.getBigUint64(o, true);
      const offset = this.#u64(req, 8);
      const size = v.getUint32(o + 16, true);
      if (offset < 0) return this.#replyError(req, 27 /* EFBIG */);
      if (size > req.bodyLength - 40) return this.#replyError(req, ERRNO.EINVAL);
      if (!fs.write) return this.#replyError(req, ERRNO.ENOSYS);
      // A copy: the request buffer is reused at once (and is shared memory).
      const data = req.bytes.slice(o + 40, o + 40 + size);
      const info = {
        writeFlags: v.getUint32(o + 20, true),
        lockOwner: v.getBigUint64(o + 24, true),
        flags: v.getUint32(o + 32, true) & this.#openFlagMask,
      };
      const handle = this.#handle(fh) as H;
      const r = fs.write(req, node, handle, offset, data, info);
      return this.#then(req, r, (n) => {
        const s = this.#scratchFor(OUT_HEADER_SIZE + 8);
        s.setUint32(OUT_HEADER_SIZE, Math.max(0, Math.min(n, size)), true);
        s.setUint32(OUT_HEADER_SIZE + 4, 0, true);
        this.#replyScratch(req, 8);
      });
    };

    t[Opcode.STATFS] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      const send = (st: StatFs) => {
        const s = this.#scratchFor(OUT_HEADER_SIZE + STATFS_OUT_SIZE);
        this.#scratch.fill(0, OUT_HEADER_SIZE, OUT_HEADER_SIZE + STATFS_OUT_SIZE);
        encodeStatfsOut(s, OUT_HEADER_SIZE, st);
        this.#replyScratch(req, STATFS_OUT_SIZE);
      };
      if (!fs.statfs) {
        // Like libfuse: an empty filesystem rather than an error, so df(1) works.
        return send({
          blocks: 0,
          bfree: 0,
          bavail: 0,
          files: 0,
          ffree: 0,
          bsize: 4096,
          namelen: 255,
          frsize: 4096,
        });
      }
      return this.#then(req, fs.statfs(req, node), send);
    };

    const releaseOp = (req: Request, dir: boolean): void | Promise<void> => {
      const node = this.#node(req);
      if (req.bodyLength < 16) return this.#replyError(req, ERRNO.EINVAL);
      const v = req.view, o = req.bodyOffset;
      const fh = v.getBigUint64(o, true);
      const had = this.#handles.has(fh);
      const handle = this.#handles.get(fh) as H;
      this.#handles.delete(fh);
      const done = (): void => {
        this.#replyScratch(req, 0);
      };
      if (typeof node === "number" || !had) return void done();
      const r = dir ? fs.releasedir?.(req, node, handle) : fs.release?.(req, node, handle, {
        flags: v.getUint32(o + 8, true),
        releaseFlags: v.getUint32(o + 12, true),
        lockOwner: req.bodyLength >= 24 ? v.getBigUint64(o + 16, true) : 0n,
      });
      if (r instanceof Promise) {
        return r.then(done, (e) => {
          this.#log.error(`FUSE release failed: ${e}`);
          done();
        });
      }
      done();
    };
    t[Opcode.RELEASE] = (req) => releaseOp(req, false);
    t[Opcode.RELEASEDIR] = (req) => releaseOp(req, true);

    const fsyncOp = (req: Request, dir: boolean): void | Promise<void> => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 16) return this.#replyError(req, ERRNO.EINVAL);
      const fh = req.view.getBigUint64(req.bodyOffset, true);
      const datasync = (req.view.getUint32(req.bodyOffset + 8, true) & FUSE_FSYNC_FDATASYNC) !== 0;
      const op = dir ? fs.fsyncdir : fs.fsync;
      if (!op) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, op.call(fs, req, node, this.#handle(fh) as H, datasync), () => {
        this.#replyScratch(req, 0);
      });
    };
    t[Opcode.FSYNC] = (req) => fsyncOp(req, false);
    t[Opcode.FSYNCDIR] = (req) => fsyncOp(req, true);

    t[Opcode.FLUSH] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 24) return this.#replyError(req, ERRNO.EINVAL);
      const fh = req.view.getBigUint64(req.bodyOffset, true);
      const owner = req.view.getBigUint64(req.bodyOffset + 16, true);
      if (!fs.flush) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.flush(req, node, this.#handle(fh) as H, owner), () => {
        this.#replyScratch(req, 0);
      });
    };

    t[Opcode.SETXATTR] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 8) return this.#replyError(req, ERRNO.EINVAL);
      const size = req.view.getUint32(req.bodyOffset, true);
      const flags = req.view.getUint32(req.bodyOffset + 4, true);
      const nm = this.#name(req, 8, false);
      if (typeof nm === "number") return this.#replyError(req, nm);
      if (nm[0] === "" || nm[0].length > 255) return this.#replyError(req, ERRNO.ERANGE);
      if (size > XATTR_SIZE_MAX || nm[1] + size > req.bodyLength) {
        return this.#replyError(req, ERRNO.E2BIG);
      }
      const start = req.bodyOffset + nm[1];
      const value = req.bytes.slice(start, start + size);
      if (!fs.setxattr) return this.#replyError(req, ERRNO.ENOSYS);
      this.#quickNoXattrs(node.nodeId, 0);
      return this.#then(req, fs.setxattr(req, node, nm[0], value, flags), () => {
        this.#replyScratch(req, 0);
      });
    };

    const sizedReply = (req: Request, size: number, data: Uint8Array): void => {
      if (size === 0) {
        const s = this.#scratchFor(OUT_HEADER_SIZE + 8);
        s.setUint32(OUT_HEADER_SIZE, data.length, true);
        s.setUint32(OUT_HEADER_SIZE + 4, 0, true);
        this.#replyScratch(req, 8);
      } else if (data.length > size) {
        this.#replyError(req, ERRNO.ERANGE);
      } else {
        this.#replyData(req, data);
      }
    };

    t[Opcode.GETXATTR] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 8) return this.#replyError(req, ERRNO.EINVAL);
      const size = req.view.getUint32(req.bodyOffset, true);
      const nm = this.#name(req, 8, false);
      if (typeof nm === "number") return this.#replyError(req, nm);
      if (!fs.getxattr) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.getxattr(req, node, nm[0]), (value) => {
        if (value.length > XATTR_SIZE_MAX) return this.#replyError(req, ERRNO.E2BIG);
        sizedReply(req, size, value);
      });
    };

    t[Opcode.LISTXATTR] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 8) return this.#replyError(req, ERRNO.EINVAL);
      const size = req.view.getUint32(req.bodyOffset, true);
      if (!fs.listxattr) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.listxattr(req, node), (names) => {
        const encoded = utf8Encoder.encode(names.map((n) => n + "\0").join(""));
        if (encoded.length > XATTR_SIZE_MAX) return this.#replyError(req, ERRNO.E2BIG);
        sizedReply(req, size, encoded);
      });
    };

    t[Opcode.REMOVEXATTR] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      const nm = this.#name(req, 0, false);
      if (typeof nm === "number") return this.#replyError(req, nm);
      if (!fs.removexattr) return this.#replyError(req, ERRNO.ENOSYS);
      this.#quickNoXattrs(node.nodeId, 0);
      return this.#then(req, fs.removexattr(req, node, nm[0]), () => this.#replyScratch(req, 0));
    };

    t[Opcode.READDIR] = (req) => this.#readdir(req, false);
    t[Opcode.READDIRPLUS] = (req) => this.#readdir(req, true);

    t[Opcode.ACCESS] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 8) return this.#replyError(req, ERRNO.EINVAL);
      if (!fs.access) return this.#replyError(req, ERRNO.ENOSYS);
      const mask = req.view.getUint32(req.bodyOffset, true);
      return this.#then(req, fs.access(req, node, mask), () => this.#replyScratch(req, 0));
    };

    t[Opcode.FALLOCATE] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 32) return this.#replyError(req, ERRNO.EINVAL);
      const fh = req.view.getBigUint64(req.bodyOffset, true);
      const offset = this.#u64(req, 8), length = this.#u64(req, 16);
      const mode = req.view.getUint32(req.bodyOffset + 24, true);
      if (offset < 0 || length < 0) return this.#replyError(req, 27 /* EFBIG */);
      if (!fs.fallocate) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(
        req,
        fs.fallocate(req, node, this.#handle(fh) as H, offset, length, mode),
        () => this.#replyScratch(req, 0),
      );
    };

    t[Opcode.LSEEK] = (req) => {
      const node = this.#node(req);
      if (typeof node === "number") return this.#replyError(req, node);
      if (req.bodyLength < 24) return this.#replyError(req, ERRNO.EINVAL);
      const fh = req.view.getBigUint64(req.bodyOffset, true);
      const offset = this.#u64(req, 8);
      const whence = req.view.getUint32(req.bodyOffset + 16, true);
      if (offset < 0) return this.#replyError(req, 6 /* ENXIO */);
      if (!fs.lseek) return this.#replyError(req, ERRNO.ENOSYS);
      return this.#then(req, fs.lseek(req, node, this.#handle(fh) as H, offset, whence), (at) => {
        const s = this.#scratchFor(OUT_HEADER_SIZE + 8);
        s.setBigUint64(OUT_HEADER_SIZE, BigInt(Math.max(0, at)), true);
        this.#replyScratch(req, 8);
      });
    };

    t[Opcode.COPY_FILE_RANGE] = (req) => {
      const nodeIn = this.#node(req);
      if (typeof nodeIn === "number") return this.#replyError(req, nodeIn);
      if (req.bodyLength < 56) return this.#replyError(req, ERRNO.EINVAL);
      const v = req.view, o = req.bodyOffset;
      const nodeOut = this.#node(req, v.getBigUint64(o + 16, true));
      if (typeof nodeOut === "number") return this.#replyError(req, nodeOut);
      const offIn = this.#u64(req, 8), offOut = this.#u64(req, 32), len = this.#u64(req, 40);
      if (offIn < 0 || offOut < 0) return this.#replyError(req, ERRNO.EINVAL);
      const length = Math.min(len < 0 ? 0xffffffff : len, 0xffffffff);
      if (!fs.copyFileRange) return this.#replyError(req, ERRNO.ENOSYS);
      const r = fs.copyFileRange(
        req,
        nodeIn,
        this.#handle(v.getBigUint64(o, true)) as H,
        offIn,
        nodeOut,
        this.#handle(v.getBigUint64(o + 24, true)) as H,
        offOut,
        length,
        Number(v.getBigUint64(o + 48, true) & 0xffffffffn),
      );
      return this.#then(req, r, (n) => {
        const s = this.#scratchFor(OUT_HEADER_SIZE + 8);
        s.setUint32(OUT_HEADER_SIZE, Math.max(0, Math.min(n, length)), true);
        s.setUint32(OUT_HEADER_SIZE + 4, 0, true);
        this.#replyScratch(req, 8);
      });
    };
    // Everything else (GETLK/SETLK/SETLKW, BMAP, IOCTL, POLL, SYNCFS, TMPFILE, ...) has no
    // entry: ENOSYS. Locks stay local to the kernel since POSIX_LOCKS/FLOCK_LOCKS are off.
  }

  #lookupDone(
    req: Request,
    _parent: NodeImpl,
    _name: string,
    value: Entry | Errno,
    ok: (e: Entry) => void,
  ): void {
    if (value instanceof Errno) {
      if (value.code === ERRNO.ENOENT && this.#negativeTimeout > 0) {
        const s = this.#scratchFor(OUT_HEADER_SIZE + ENTRY_OUT_SIZE);
        encodeEntryOut(s, OUT_HEADER_SIZE, 0n, 0, this.#negativeTimeout, 0, undefined);
        this.#replyScratch(req, ENTRY_OUT_SIZE);
        return;
      }
      this.#replyError(req, value.code);
      return;
    }
    try {
      ok(value);
    } catch (error) {
      this.#fail(req, error);
    }
  }

  #readdir(req: Request, plus: boolean): void | Promise<void> {
    const node = this.#node(req);
    if (typeof node === "number") return this.#replyError(req, node);
    if (req.bodyLength < 24) return this.#replyError(req, ERRNO.EINVAL);
    const fh = req.view.getBigUint64(req.bodyOffset, true);
    const offset = this.#u64(req, 8);
    const size = Math.min(req.view.getUint32(req.bodyOffset + 16, true), 1024 * 1024);
    if (offset < 0) return this.#replyError(req, ERRNO.EINVAL);
    const fs = this.#fs;
    if (!fs.readdir) return this.#replyError(req, ERRNO.ENOSYS);
    const handle = this.#handle(fh) as H;
    return this.#then(req, fs.readdir(req, node, handle, offset, plus), (entries) => {
      const s = this.#scratchFor(OUT_HEADER_SIZE + size);
      const bytes = this.#scratch;
      let at = OUT_HEADER_SIZE;
      const end = OUT_HEADER_SIZE + size;
      const entered: NodeImpl[] = [];
      try {
        for (const d of entries) {
          const name = utf8Encoder.encode(d.name);
          if (name.length === 0 || name.length > NAME_MAX) continue;
          const need = direntSize(name.length, plus);
          if (at + need > end) break;
          const type = (d.mode & S_IFMT) >>> 12;
          if (plus) {
            const e = d.entry;
            const dot = d.name === "." || d.name === "..";
            if (e && !dot) {
              encodeEntryOut(
                s,
                at,
                0n,
                e.generation ?? 0,
                e.entryTimeout ?? this.#entryTimeout,
                e.attrTimeout ?? this.#attrTimeout,
                e.attr,
              );
              const child = this.nodes.enter(
                node,
                d.name,
                e.key ?? String(e.attr.ino),
                e.attr.ino,
                e.attr.mode,
              );
              s.setBigUint64(at, child.nodeId, true);
              if (e.noXattrs) {
                this.#quickNoXattrs(child.nodeId, e.attrTimeout ?? this.#attrTimeout);
              }
              entered.push(child);
            } else {
              encodeEntryOut(s, at, 0n, 0, 0, 0, undefined);
            }
            encodeDirent(bytes, s, at + ENTRY_OUT_SIZE, d.ino, d.next, type, name);
          } else {
            encodeDirent(bytes, s, at, d.ino, d.next, type, name);
          }
          at += need;
        }
        const e = this.#replyScratch(req, at - OUT_HEADER_SIZE);
        if (e === ERRNO.ENOENT) { for (const child of entered) this.#dropLookup(child); }
      } catch (error) {
        for (const child of entered) this.#dropLookup(child);
        throw error;
      }
    });
  }
}

/** The root node id (for tests). */
export const ROOT_ID: bigint = FUSE_ROOT_ID;
