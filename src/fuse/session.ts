/**
 * The request loop and the opcode dispatch table.
 *
 * Invariants:
 * - The device's reader worker does blocking read()s into SharedArrayBuffer slots and hands
 *   each request to `dispatch`, which starts its handler at once: it never waits for a
 *   handler before taking the next request, so many requests are in flight; replies are
 *   written in completion order.
 * - Every request except FORGET, BATCH_FORGET, INTERRUPT (when its target is found) and
 *   NOTIFY_REPLY gets exactly one reply. Nothing a request contains can throw out of
 *   `dispatch`.
 * - The preamble common to all operations (node lookup, size check, decoding the fixed part,
 *   names, ENOSYS for a missing method) runs once, in `#prepare`, from the op's table record;
 *   a handler starts with everything it needs on the request.
 * - A request buffer goes back to the device as soon as the handler's synchronous part has
 *   run: decoders copy what they read, and WRITE data is copied out.
 *
 * @module
 */

import {
  ERRNO,
  MODE_PERM_MASK,
  NAME_MAX,
  O_APPEND,
  O_TRUNC,
  RENAME_EXCHANGE,
  S_IFDIR,
  XATTR_SIZE_MAX,
} from "../linux/mod.ts";
import {
  ACCESS_IN_SIZE,
  type AccessIn,
  ATTR_OUT_SIZE,
  COPY_FILE_RANGE_IN_SIZE,
  type CopyFileRangeIn,
  CREATE_IN_SIZE,
  type CreateIn,
  decodeAccessIn,
  decodeBatchForgetIn,
  decodeCopyFileRangeIn,
  decodeCreateIn,
  decodeFallocateIn,
  decodeFlushIn,
  decodeForgetIn,
  decodeFsyncIn,
  decodeGetattrIn,
  decodeGetxattrIn,
  decodeInHeader,
  decodeInitIn,
  decodeInterruptIn,
  decodeLinkIn,
  decodeLseekIn,
  decodeMkdirIn,
  decodeMknodIn,
  decodeOpenIn,
  type Decoder,
  decodeReadIn,
  decodeReleaseIn,
  decodeRename2In,
  decodeRenameIn,
  decodeSetattrIn,
  decodeSetxattrIn,
  decodeWriteIn,
  DIRENT_HEADER_SIZE,
  DIRENTPLUS_HEADER_SIZE,
  direntSize,
  direntType,
  encodeAttrOut,
  encodeDirent,
  encodeEntryNodeId,
  encodeEntryOut,
  encodeGetxattrOut,
  encodeInitOut,
  encodeInitVersionOut,
  encodeLseekOut,
  encodeName,
  encodeNotifyInvalEntry,
  encodeNotifyInvalInode,
  encodeNotifyStore,
  encodeOpenOut,
  encodeOutHeader,
  encodeStatfsOut,
  encodeWriteOut,
  ENTRY_OUT_SIZE,
  FALLOCATE_IN_SIZE,
  type FallocateIn,
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
  FLUSH_IN_SIZE,
  type FlushIn,
  FOPEN_CACHE_DIR,
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  FOPEN_NOFLUSH,
  FOPEN_NONSEEKABLE,
  forgetOneCount,
  forgetOneNodeId,
  FSYNC_IN_SIZE,
  type FsyncIn,
  FUSE_GETATTR_FH,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_MIN_KERNEL_MINOR,
  FUSE_ROOT_ID,
  GETATTR_IN_SIZE,
  type GetattrIn,
  GETXATTR_IN_SIZE,
  GETXATTR_OUT_SIZE,
  type GetxattrIn,
  IN_HEADER_SIZE,
  INIT_IN_MIN_SIZE,
  INIT_OUT_SIZE,
  INIT_VERSION_OUT_SIZE,
  InitFlag,
  type InitIn,
  LINK_IN_SIZE,
  type LinkIn,
  LSEEK_IN_SIZE,
  LSEEK_OUT_SIZE,
  type LseekIn,
  MKDIR_IN_SIZE,
  type MkdirIn,
  MKNOD_IN_SIZE,
  type MknodIn,
  NOTIFY_INVAL_ENTRY_SIZE,
  NOTIFY_INVAL_INODE_SIZE,
  NOTIFY_STORE_SIZE,
  NotifyCode,
  Opcode,
  opcodeName,
  OPEN_IN_SIZE,
  OPEN_OUT_SIZE,
  type OpenIn,
  OUT_HEADER_SIZE,
  READ_IN_MIN_SIZE,
  type ReadIn,
  RELEASE_IN_MIN_SIZE,
  type ReleaseIn,
  RENAME2_IN_SIZE,
  RENAME_IN_SIZE,
  type RenameIn,
  SETATTR_IN_SIZE,
  type SetattrIn,
  SETXATTR_IN_SIZE,
  type SetxattrIn,
  STATFS_OUT_SIZE,
  WRITE_IN_SIZE,
  WRITE_OUT_SIZE,
  type WriteIn,
} from "./abi.ts";
import { combineFilters, type Device, type RequestBuffer } from "./device.ts";
import { Errno, errnoOf } from "./errno.ts";
import type {
  AttrResult,
  Created,
  DirChanged,
  DirEntry,
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
import { Absent } from "./filesystem.ts";
import { type NodeImpl, NodeTable } from "./nodes.ts";
import { NoXattrs } from "./no_xattrs.ts";
import { CachedAttrs } from "./cached_attrs.ts";
import { CachedOpens } from "./cached_opens.ts";
import { EarlyWrites } from "./early_writes.ts";

const MiB = 1024 * 1024;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Session parameters (the mount-independent part of `MountOptions`). */
export interface SessionOptions {
  entryTimeout?: number;
  attrTimeout?: number;
  negativeTimeout?: number;
  writebackCache?: boolean;
  cacheSymlinks?: boolean;
  /** As FuseOptions.posixAcl. */
  posixAcl?: boolean;
  maxWrite?: number;
  maxReadahead?: number;
  maxBackground?: number;
  /** Request slots read ahead by the device reader (default 16). */
  slots?: number;
  logger?: Logger;
  debug?: boolean;
  /** A request in flight this long (to 1.5 times it) is logged once as stuck (default 20 s). */
  stuckAfterMs?: number;
}

/** Size of request buffers for these options: max_write + 8 KiB (smaller reads fail). */
export function requestBufferSize(options: SessionOptions): number {
  return maxWriteOf(options) + 8192;
}

/** The max_write the session agrees for these options: 4 KiB to 1 MiB, 1 MiB by default. */
export function maxWriteOf(options: SessionOptions): number {
  return Math.max(4096, Math.min(MiB, options.maxWrite ?? MiB));
}

/** Watchdog rounds (of half `stuckAfterMs`) after which a request in flight is logged. */
const STUCK_ROUNDS = 3;

/**
 * NOTIFY_STORE buffers kept for messages over STORE_POOLED_FROM bytes: their size (a small file
 * read ahead and its header fit), and how many (the stores of one `readFiles` answer).
 */
const STORE_POOLED_FROM = 16 * 1024;
const STORE_BUFFER_BYTES = 128 * 1024;
const STORE_BUFFERS_KEPT = 16;

/** One request in flight; it is also the `RequestContext` given to the implementation. */
class Request implements RequestContext {
  len = 0;
  opcode = 0;
  unique = 0n;
  nodeId = 0n;
  uid = 0;
  gid = 0;
  pid = 0;
  /** The read buffer (valid until released) and the body's place in it. */
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly bodyOffset = IN_HEADER_SIZE;
  readonly bodyLength: number;
  // Filled by the preamble (`Session.#prepare`) from the op's record.
  node: NodeImpl | undefined = undefined;
  /** The second node some ops name in their body (new parent, link source, copy target). */
  node2: NodeImpl | undefined = undefined;
  /** The decoded fixed part (the op's decoder's type). */
  input: unknown = undefined;
  name = "";
  /** The second name (rename's new name, symlink's target). */
  name2 = "";
  /** Body offset just after the last name's NUL. */
  namesEnd = 0;
  /**
   * The session's change epoch when it was dispatched; for a change, once it began (see
   * `Session.#mayRecord`, `Session.#recordChanged`).
   */
  epoch = 0;
  /** It may change nodes: counted in flight until answered. */
  changing = false;
  replied = false;
  /** The reader answered it already (a write answered ahead): replies are not sent. */
  answeredAhead = false;
  /** Watchdog rounds it has been in flight through (see `Session.#watch`). */
  watched = 0;
  #controller: AbortController | undefined;
  #interrupted = false;

  constructor(bytes: Uint8Array, view: DataView, length: number) {
    this.bytes = bytes;
    this.view = view;
    this.bodyLength = length - IN_HEADER_SIZE;
    decodeInHeader(view, this);
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#interrupted) this.#controller.abort(errnoOf(ERRNO.EINTR));
    }
    return this.#controller.signal;
  }

  interrupt(): void {
    this.#interrupted = true;
    this.#controller?.abort(errnoOf(ERRNO.EINTR));
  }
}

/** How the names after an op's fixed part are read. */
const Names = {
  NONE: 0,
  /** One file name (validated: 1..NAME_MAX bytes, not "." or "..", no "/"). */
  FILE: 1,
  /** Two file names (rename). */
  FILE_PAIR: 2,
  /** A file name, then a symlink target (not validated as a name). */
  FILE_TARGET: 3,
  /** An xattr name (not validated as a file name). */
  XATTR: 4,
} as const;
type NameSpec = typeof Names[keyof typeof Names];

/** How the preamble looks up the request's node. */
const NodeUse = {
  /** ENOENT when unknown. */
  REQUIRED: 0,
  /** Looked up, may be missing (RELEASE of a forgotten node still drops its handle). */
  OPTIONAL: 1,
  /** Not a node request (INIT, DESTROY). */
  NONE: 2,
} as const;
type NodeUseSpec = typeof NodeUse[keyof typeof NodeUse];

/** A handler: starts the operation; the request carries the preamble's results. */
type Handler<I> = (s: Session, req: Request, input: I) => void | Promise<void>;

/** One record of the dispatch table. */
interface Op {
  /** Smallest body: the fixed part (a named *_IN_SIZE constant); names follow it. */
  readonly min: number;
  readonly names: NameSpec;
  readonly node: NodeUseSpec;
  /** Decodes the fixed part (an errno for bad input); none when the body is only names. */
  readonly decode: Decoder<unknown> | undefined;
  /** The id of a second node the body names (ENOENT when unknown). */
  readonly node2: ((input: never) => bigint) | undefined;
  /** The FileSystem method called: ENOSYS when the filesystem lacks it. */
  readonly method: keyof FileSystem | undefined;
  /**
   * May change its nodes or the names it gives: ends what the reader answers for them first, and
   * counts as a change in flight until answered (see `Session.#mayRecord`).
   */
  readonly changes: boolean;
  readonly run: Handler<never>;
}

function op<I = undefined>(record: {
  min?: number;
  names?: NameSpec;
  node?: NodeUseSpec;
  decode?: Decoder<I>;
  node2?: (input: I) => bigint;
  method?: keyof FileSystem;
  changes?: boolean;
  run: Handler<I>;
}): Op {
  return {
    min: record.min ?? 0,
    names: record.names ?? Names.NONE,
    node: record.node ?? NodeUse.REQUIRED,
    decode: record.decode,
    node2: record.node2,
    method: record.method,
    changes: record.changes ?? false,
    run: record.run,
  };
}

/** Sends the value of a completed operation (the request carries the context). */
type Reply<T> = (s: Session, req: Request, value: T) => void;

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
  readonly #cacheSymlinks: boolean;
  readonly #posixAcl: boolean;
  #maxWrite: number;
  #maxReadahead: number;
  #maxBackground: number;
  #scratch: Uint8Array<ArrayBuffer>;
  #scratchView: DataView;
  #inflight = new Map<bigint, Request>();
  #requests = 0;
  #handles = new Map<bigint, H>();
  #nextHandle = 1n;
  /** 1 at the opcodes whose method the filesystem lacks (looked up once, at construction). */
  #lacks: Uint8Array;
  /** The no-xattrs shortcut; none when tracing (the trace then shows every request). */
  #noXattrs: NoXattrs | undefined;
  /** Opens answered on the reader thread; none when tracing or without `cachedHandle`. */
  #cachedOpens: CachedOpens | undefined;
  /** Stable attributes answered on the reader thread; none when tracing. */
  #cachedAttrs: CachedAttrs | undefined;
  /** Writes answered ahead on the reader thread; none when tracing. */
  #earlyWrites: EarlyWrites | undefined;
  /** Moves at every change through the mount (dispatched or answered) and every invalidation. */
  #changeEpoch = 0;
  /** Requests that may change nodes, dispatched and not yet answered. */
  #changesInFlight = 0;
  #initialized = false;
  /** Applied to open flags given to the implementation (drops O_APPEND in writeback mode). */
  #openFlagMask = ~0;
  #ended = false;
  #destroyed = false;
  /** NOTIFY_STORE buffers written and free again (`storeData`). */
  readonly #storeBuffers: Uint8Array<ArrayBuffer>[] = [];
  #proto = FUSE_KERNEL_MINOR_VERSION;
  #readyResolve!: () => void;
  #readyReject!: (e: Error) => void;
  #closedResolve!: () => void;
  #started = false;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  readonly #stuckAfterMs: number;

  constructor(fs: FileSystem<H>, device: Device, options: SessionOptions = {}) {
    this.#fs = fs;
    this.#device = device;
    this.#log = options.logger ?? noopLogger;
    this.#debug = options.debug ?? false;
    this.#stuckAfterMs = Math.max(2, options.stuckAfterMs ?? 20_000);
    this.#entryTimeout = options.entryTimeout ?? 1;
    this.#attrTimeout = options.attrTimeout ?? 1;
    this.#negativeTimeout = options.negativeTimeout ?? 0;
    this.#writeback = options.writebackCache ?? false;
    this.#cacheSymlinks = options.cacheSymlinks ?? false;
    this.#posixAcl = options.posixAcl ?? false;
    this.#maxWrite = maxWriteOf(options);
    this.#maxReadahead = Math.max(0, Math.min(MiB, options.maxReadahead ?? MiB));
    this.#maxBackground = Math.max(1, Math.min(65535, options.maxBackground ?? 64));
    this.#scratch = new Uint8Array(64 * 1024);
    this.#scratchView = new DataView(this.#scratch.buffer);
    this.#noXattrs = this.#debug ? undefined : new NoXattrs();
    this.#earlyWrites = this.#debug ? undefined : new EarlyWrites();
    const held = this.#earlyWrites?.held;
    this.#cachedOpens = this.#debug || fs.cachedHandle === undefined
      ? undefined
      : new CachedOpens(held);
    this.#cachedAttrs = this.#debug ? undefined : new CachedAttrs(held);
    this.#lacks = new Uint8Array(Session.#OPS.length);
    for (const [opcode, record] of Session.#OPS.entries()) {
      if (record?.method !== undefined && fs[record.method] === undefined) this.#lacks[opcode] = 1;
    }
    this.nodes = new NodeTable();
    this.ready = new Promise<void>((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    this.ready.catch(() => {});
    this.closed = new Promise<void>((resolve) => this.#closedResolve = resolve);
  }

  /** Number of requests being handled. */
  get inFlight(): number {
    return this.#inflight.size;
  }

  /** Requests the device handed to the session so far (the reader's own answers not counted). */
  get requests(): number {
    return this.#requests;
  }

  /** Starts serving: the device delivers requests to `dispatch` (once). */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const watchdog = setInterval(() => this.#watch(), this.#stuckAfterMs / (STUCK_ROUNDS - 1));
    Deno.unrefTimer(watchdog);
    this.#watchdog = watchdog;
    this.#device.start({
      request: (buffer, length, answered) => this.dispatch(buffer, length, answered),
      end: (code) => {
        if (code !== ERRNO.ENODEV) this.#log.warn(`FUSE device read failed: ${errnoOf(code).name}`);
        this.#finish();
      },
      retried: (code) =>
        this.#log.warn(`FUSE device read failed: ${errnoOf(code).name}; reading again`),
      // Quiet flushes first: they must see every WRITE (io_uring rings run no `ahead`).
      filter: combineFilters(
        [
          this.#earlyWrites?.quietFlushes,
          this.#noXattrs?.filter,
          this.#cachedOpens?.filter,
          this.#cachedAttrs?.filter,
        ].filter((f) => f !== undefined),
      ),
      ahead: this.#earlyWrites?.filter,
    });
  }

  async #finish(): Promise<void> {
    this.#ended = true;
    clearInterval(this.#watchdog);
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
   * Logs, once each, the requests in flight for STUCK_ROUNDS watchdog rounds: a caller blocked
   * that long is a bug (or a container that stopped answering), and this says which.
   */
  #watch(): void {
    let stuck = 0;
    for (const req of this.#inflight.values()) {
      if (++req.watched !== STUCK_ROUNDS) continue;
      stuck++;
      const name = req.name === "" ? "" : ` name '${req.name}'`;
      this.#log.warn(
        `FUSE ${opcodeName(req.opcode)} (request ${req.unique}, node ${req.nodeId}${name}, ` +
          `pid ${req.pid}) unanswered for over ${this.#stuckAfterMs / 1000} s`,
      );
    }
    const device = stuck > 0 ? this.#device.describe?.() : undefined;
    if (device !== undefined) this.#log.warn(`FUSE device: ${device}`);
  }

  /**
   * Handles one request of `length` bytes in `buf` (exposed for tests; the loop calls it).
   * Never throws.
   */
  dispatch(buf: RequestBuffer, length: number, answered = false): void {
    let req: Request | undefined;
    try {
      if (length < IN_HEADER_SIZE || length > buf.bytes.length) {
        this.#log.warn(`FUSE: dropped a ${length}-byte request (shorter than its header)`);
        buf.release();
        return;
      }
      this.#requests++;
      req = new Request(buf.bytes, buf.view, length);
      req.answeredAhead = answered;
      const opcode = req.opcode;
      if (this.#debug) {
        this.#log.debug(
          `rx ${req.unique} ${
            opcodeName(opcode)
          } node=${req.nodeId} len=${length} uid=${req.uid} pid=${req.pid}`,
        );
      }
      if (req.len !== length) {
        this.#log.warn(`FUSE: request ${req.unique} says ${req.len} bytes but has ${length}`);
        this.#replyError(req, ERRNO.EINVAL);
      } else if (opcode === Opcode.FORGET || opcode === Opcode.BATCH_FORGET) {
        this.#forget(req);
      } else if (opcode === Opcode.INTERRUPT) {
        this.#interrupt(req);
      } else if (opcode === Opcode.NOTIFY_REPLY) {
        // Answers to notifications the layer never sends (RETRIEVE).
      } else if (!this.#initialized && opcode !== Opcode.INIT) {
        this.#replyError(req, ERRNO.EIO);
      } else {
        const record = Session.#OPS[opcode];
        const e = record === undefined ? ERRNO.ENOSYS : this.#prepare(record, req);
        if (e !== 0) {
          this.#replyError(req, e);
        } else {
          this.#inflight.set(req.unique, req);
          this.#run(record!, req);
        }
      }
      // Handlers decode (and copy) everything they need synchronously.
      buf.release();
    } catch (error) {
      // Only a bug in the layer gets here; keep serving.
      this.#log.error(`FUSE: internal error on a request: ${error}`);
      if (req && !req.replied) this.#replyError(req, ERRNO.EIO);
      buf.release();
    } finally {
      // Seen, and the caches of its node ended (`#changing`): the reader may answer for it again.
      if (answered && req !== undefined) this.#earlyWrites?.seen(req.nodeId);
    }
  }

  /** The preamble every op shares; 0, or the errno to answer. */
  #prepare(record: Op, req: Request): number {
    if (record.node !== NodeUse.NONE) {
      req.node = this.nodes.get(req.nodeId);
      if (req.node === undefined && record.node === NodeUse.REQUIRED) return ERRNO.ENOENT;
    }
    if (req.bodyLength < record.min) return ERRNO.EINVAL;
    if (record.decode !== undefined) {
      const input = record.decode(req.view, req.bodyOffset, req.bodyLength);
      if (typeof input === "number") return input;
      req.input = input;
      if (record.node2 !== undefined) {
        req.node2 = this.nodes.get((record.node2 as (i: unknown) => bigint)(input));
        if (req.node2 === undefined) return ERRNO.ENOENT;
      }
    }
    if (record.names !== Names.NONE) {
      const e = this.#names(req, record.names, record.min);
      if (e !== 0) return e;
    }
    if (this.#lacks[req.opcode] === 1) return ERRNO.ENOSYS;
    req.epoch = this.#changeEpoch;
    if (record.changes) this.#changing(req);
    return 0;
  }

  /**
   * `req` may change its nodes and the names it gives: the reader stops answering for them, and
   * the request counts as a change in flight until answered.
   */
  #changing(req: Request): void {
    if (!req.changing) {
      req.changing = true;
      this.#changesInFlight++;
    }
    this.#endCached(req.node, req.name);
    this.#endCached(req.node2, req.name2);
    // Only its own answer moves the epoch from here on (see #recordChanged).
    req.epoch = this.#changeEpoch;
  }

  /** Ends what the reader answers for `node` and its child `name` (if any). */
  #endCached(node: NodeImpl | undefined, name: string): void {
    if (node === undefined) return;
    this.#changed(node.nodeId);
    const child = name === "" ? undefined : this.nodes.child(node, name);
    if (child !== undefined) this.#changed(child.nodeId);
  }

  /** `nodeId` changes (or may have): the reader no longer answers opens or GETATTR of it. */
  #changed(nodeId: bigint): void {
    this.#changeEpoch++;
    this.#forgetCached(nodeId);
  }

  #forgetCached(nodeId: bigint): void {
    this.#cachedOpens?.end(nodeId);
    this.#cachedAttrs?.end(nodeId);
  }

  /**
   * True when what answers `req` may be repeated by the reader: no change through the mount
   * was in flight or began while it was served, and no invalidation came meanwhile (an answer
   * read before a change must not outlive it).
   */
  #mayRecord(req: Request): boolean {
    return this.#changesInFlight === 0 && req.epoch === this.#changeEpoch;
  }

  /** `req` is answered (once): it leaves the requests in flight. */
  #answered(req: Request): void {
    req.replied = true;
    this.#inflight.delete(req.unique);
    if (req.changing) {
      req.changing = false;
      this.#changesInFlight--;
      this.#changeEpoch++;
    }
  }

  #run(record: Op, req: Request): void {
    let pending: void | Promise<void> = undefined;
    try {
      pending = (record.run as Handler<unknown>)(this as Session, req, req.input);
    } catch (error) {
      this.#fail(req, error);
    }
    if (pending instanceof Promise) pending.catch((error) => this.#fail(req, error));
  }

  // -------------------------------------------------------------------------------------------
  // Names

  /** Reads the names at body offset `at` into the request; 0 or an errno. */
  #names(req: Request, spec: NameSpec, at: number): number {
    const first = this.#name(req, at, spec !== Names.XATTR);
    if (typeof first === "number") return first;
    req.name = first;
    if (spec === Names.FILE_PAIR || spec === Names.FILE_TARGET) {
      const second = this.#name(req, req.namesEnd, spec === Names.FILE_PAIR);
      if (typeof second === "number") return second;
      req.name2 = second;
    }
    return 0;
  }

  /** The NUL-terminated name at body offset `at` (sets `namesEnd` after its NUL), or an errno. */
  #name(req: Request, at: number, isFileName: boolean): string | number {
    const start = req.bodyOffset + at;
    const end = req.bodyOffset + req.bodyLength;
    if (start > end) return ERRNO.EINVAL;
    const nul = req.bytes.indexOf(0, start);
    if (nul < 0 || nul >= end) return ERRNO.EINVAL;
    if (isFileName && nul - start > NAME_MAX) return ERRNO.ENAMETOOLONG;
    let s: string;
    try {
      s = utf8.decode(req.bytes.subarray(start, nul));
    } catch {
      return ERRNO.EILSEQ;
    }
    if (isFileName && (s === "" || s === "." || s === ".." || s.includes("/"))) {
      return ERRNO.EINVAL;
    }
    req.namesEnd = nul + 1 - req.bodyOffset;
    return s;
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
    if (req.answeredAhead) {
      // Only the session's own checks get here (the filesystem keeps a write's failure).
      this.#log.warn(
        `FUSE: a write answered ahead (request ${req.unique}) failed: ${errnoOf(code).name}`,
      );
    }
    this.#answered(req);
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
    this.#answered(req);
    const total = OUT_HEADER_SIZE + bodyLength;
    encodeOutHeader(this.#scratchView, total, 0, req.unique);
    if (this.#debug) this.#log.debug(`tx ${req.unique} OK ${total}`);
    return this.#write(req, [this.#scratch.subarray(0, total)], total);
  }

  /** Sends a header plus `data` (no copy of the data). */
  #replyData(req: Request, data: Uint8Array): number {
    if (req.replied) return 0;
    this.#answered(req);
    const total = OUT_HEADER_SIZE + data.length;
    encodeOutHeader(this.#scratchView, total, 0, req.unique);
    if (this.#debug) this.#log.debug(`tx ${req.unique} OK ${total}`);
    const header = this.#scratch.subarray(0, OUT_HEADER_SIZE);
    return this.#write(req, data.length ? [header, data] : [header], total);
  }

  /** Writes; returns 0 or errno. ENOENT means the kernel gave up on the request. */
  #write(req: Request, parts: Uint8Array[], total: number): number {
    if (req.answeredAhead) return 0; // the reader sent the answer
    const e = this.#device.write(parts, total);
    if (e !== 0 && e !== ERRNO.ENOENT && !this.#ended) {
      this.#log.warn(`FUSE: reply to request ${req.unique} failed: ${errnoOf(e).name}`);
    }
    return e;
  }

  /** Sends `reply(value)`, or the errno / EIO for a thrown error. */
  #then<T>(req: Request, result: Result<T>, reply: Reply<T>): void | Promise<void> {
    if (result instanceof Promise) {
      return result.then((v) => this.#settle(req, v, reply), (e) => this.#fail(req, e));
    }
    this.#settle(req, result, reply);
  }

  #settle<T>(req: Request, value: T | Errno, reply: Reply<T>): void {
    if (value instanceof Errno) {
      this.#replyError(req, value.code);
      return;
    }
    try {
      reply(this as Session, req, value);
    } catch (error) {
      this.#fail(req, error);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reply encoders shared by the table's handlers (static: no closure per request)

  static #empty(s: Session, req: Request): void {
    s.#replyScratch(req, 0);
  }

  static #entry(s: Session, req: Request, entry: Entry): void {
    if (entry.dir) s.#recordChanged(req, req.node!, entry.dir); // before: it uses the scratch
    const node = s.#encodeEntry(req, req.node!, req.name, entry, 0);
    s.#sendEntry(req, node, ENTRY_OUT_SIZE);
  }

  static #attr(s: Session, req: Request, a: AttrResult): void {
    const timeout = a.timeout ?? s.#attrTimeout;
    const sv = s.#scratchFor(OUT_HEADER_SIZE + ATTR_OUT_SIZE);
    encodeAttrOut(sv, OUT_HEADER_SIZE, timeout, a.attr);
    req.node!.ino = a.attr.ino;
    if (a.noXattrs) s.#noXattrs?.mark(req.node!.nodeId, timeout);
    s.#recordAttr(req, req.node!.nodeId, OUT_HEADER_SIZE + 16, timeout, a.stable);
    s.#replyScratch(req, ATTR_OUT_SIZE);
  }

  static #setattrDone(s: Session, req: Request, a: AttrResult): void {
    const sv = s.#scratchFor(OUT_HEADER_SIZE + ATTR_OUT_SIZE);
    encodeAttrOut(sv, OUT_HEADER_SIZE, a.timeout ?? s.#attrTimeout, a.attr);
    s.#replyScratch(req, ATTR_OUT_SIZE);
  }

  static #removed(s: Session, req: Request, changed: void | DirChanged): void {
    s.nodes.removeName(req.node!, req.name);
    if (changed) s.#recordChanged(req, req.node!, changed.dir);
    s.#replyScratch(req, 0);
  }

  /**
   * Lets the reader answer the GETATTR that follows `req`'s change of directory `dir` with `a`
   * (read right after the change): only when `a` is stable and nothing else changed or was
   * invalidated while `req` was served (it is then the only change in flight). Uses the scratch
   * buffer (the table keeps a copy).
   */
  #recordChanged(req: Request, dir: NodeImpl, a: AttrResult): void {
    if (this.#cachedAttrs === undefined || a.stable !== true || !req.changing) return;
    if (this.#changesInFlight !== 1 || req.epoch !== this.#changeEpoch) return;
    const timeout = a.timeout ?? this.#attrTimeout;
    const sv = this.#scratchFor(OUT_HEADER_SIZE + ATTR_OUT_SIZE);
    encodeAttrOut(sv, OUT_HEADER_SIZE, timeout, a.attr);
    const at = OUT_HEADER_SIZE + 16;
    this.#cachedAttrs.record(dir.nodeId, this.#scratch, timeout, at);
  }

  static #renamed(s: Session, req: Request): void {
    const exchange = ((req.input as RenameIn).flags & RENAME_EXCHANGE) !== 0;
    s.nodes.rename(req.node!, req.name, req.node2!, req.name2, exchange);
    s.#replyScratch(req, 0);
  }

  static #opened(s: Session, req: Request, o: Opened<unknown>): void {
    const fh = s.#addHandle(o.handle);
    const sv = s.#scratchFor(OUT_HEADER_SIZE + OPEN_OUT_SIZE);
    const openFlags = s.#openFlags(o);
    encodeOpenOut(sv, OUT_HEADER_SIZE, fh, openFlags);
    const dir = req.opcode === Opcode.OPENDIR;
    if (!dir) s.#grantEarly(fh, o);
    if (s.#replyScratch(req, OPEN_OUT_SIZE) === ERRNO.ENOENT) {
      s.#earlyWrites?.end(fh);
      s.#handles.delete(fh);
      return;
    }
    if (o.reuse !== undefined && o.reuse > 0 && s.#mayRecord(req)) {
      const flags = (req.input as OpenIn).flags;
      s.#cachedOpens?.mark(req.node!.nodeId, dir, flags, openFlags, o.reuse);
    }
  }

  /**
   * What the reader may answer for a file's new handle `fh` (writes ahead, quiet flushes): set
   * before the open's answer, so before any request through the handle.
   */
  #grantEarly(fh: bigint, o: Opened<unknown>): void {
    const bytes = o.writeAhead !== undefined && o.writeAhead > 0 ? o.writeAhead : 0;
    const quiet = o.quietFlush === true && !o.noFlush;
    if (bytes > 0 || quiet) this.#earlyWrites?.grant(fh, bytes, quiet);
  }

  static #openedNoHandle(s: Session, req: Request): void {
    const sv = s.#scratchFor(OUT_HEADER_SIZE + OPEN_OUT_SIZE);
    encodeOpenOut(sv, OUT_HEADER_SIZE, 0n, 0);
    s.#replyScratch(req, OPEN_OUT_SIZE);
  }

  static #created(s: Session, req: Request, c: Created<unknown>): void {
    if (c.entry.dir) s.#recordChanged(req, req.node!, c.entry.dir);
    const node = s.#encodeEntry(req, req.node!, req.name, c.entry, OPEN_OUT_SIZE);
    const fh = s.#addHandle(c.handle);
    encodeOpenOut(s.#scratchView, OUT_HEADER_SIZE + ENTRY_OUT_SIZE, fh, s.#openFlags(c));
    s.#grantEarly(fh, c);
    if (s.#replyScratch(req, ENTRY_OUT_SIZE + OPEN_OUT_SIZE) === ERRNO.ENOENT) {
      s.#earlyWrites?.end(fh);
      s.#handles.delete(fh);
      s.#dropLookup(node);
    }
  }

  static #readlinkDone(s: Session, req: Request, target: string): void {
    s.#replyData(req, utf8Encoder.encode(target));
  }

  static #read(s: Session, req: Request, d: Uint8Array): void {
    const size = (req.input as ReadIn).size;
    s.#replyData(req, d.length > size ? d.subarray(0, size) : d);
  }

  static #count(s: Session, req: Request, n: number, max: number): void {
    const sv = s.#scratchFor(OUT_HEADER_SIZE + WRITE_OUT_SIZE);
    encodeWriteOut(sv, OUT_HEADER_SIZE, Math.max(0, Math.min(n, max)));
    s.#replyScratch(req, WRITE_OUT_SIZE);
  }

  static #written(s: Session, req: Request, n: number): void {
    Session.#count(s, req, n, (req.input as WriteIn).size);
  }

  static #copied(s: Session, req: Request, n: number): void {
    Session.#count(s, req, n, (req.input as CopyFileRangeIn).length);
  }

  static #statfs(s: Session, req: Request, st: StatFs): void {
    const sv = s.#scratchFor(OUT_HEADER_SIZE + STATFS_OUT_SIZE);
    s.#scratch.fill(0, OUT_HEADER_SIZE, OUT_HEADER_SIZE + STATFS_OUT_SIZE);
    encodeStatfsOut(sv, OUT_HEADER_SIZE, st);
    s.#replyScratch(req, STATFS_OUT_SIZE);
  }

  /** The xattr size protocol: size 0 asks for the length; a smaller buffer is ERANGE. */
  static #sized(s: Session, req: Request, data: Uint8Array): void {
    if (data.length > XATTR_SIZE_MAX) return s.#replyError(req, ERRNO.E2BIG);
    const size = (req.input as GetxattrIn).size;
    if (size === 0) {
      const sv = s.#scratchFor(OUT_HEADER_SIZE + GETXATTR_OUT_SIZE);
      encodeGetxattrOut(sv, OUT_HEADER_SIZE, data.length);
      s.#replyScratch(req, GETXATTR_OUT_SIZE);
    } else if (data.length > size) {
      s.#replyError(req, ERRNO.ERANGE);
    } else {
      s.#replyData(req, data);
    }
  }

  static #xattrNames(s: Session, req: Request, names: string[]): void {
    Session.#sized(s, req, utf8Encoder.encode(names.map((n) => n + "\0").join("")));
  }

  static #seeked(s: Session, req: Request, at: number): void {
    const sv = s.#scratchFor(OUT_HEADER_SIZE + LSEEK_OUT_SIZE);
    encodeLseekOut(sv, OUT_HEADER_SIZE, at);
    s.#replyScratch(req, LSEEK_OUT_SIZE);
  }

  static #dirents(s: Session, req: Request, entries: DirEntry[]): void {
    s.#replyDirents(req, entries);
  }

  // -------------------------------------------------------------------------------------------
  // Helpers

  /**
   * Records the fuse_attr encoded at `at` in the scratch buffer, answering `req`, as `nodeId`'s
   * when `stable` and no change overlapped; else ends what the reader held of it.
   */
  #recordAttr(
    req: Request,
    nodeId: bigint,
    at: number,
    seconds: number,
    stable: boolean | undefined,
  ): void {
    const cached = this.#cachedAttrs;
    if (cached === undefined) return;
    if (stable !== true || !this.#mayRecord(req)) return cached.end(nodeId);
    cached.record(nodeId, this.#scratch, seconds, at);
  }

  /** The handle of `fh`; for a number the reader made, one asked of the filesystem now. */
  #handle(fh: bigint, req: Request): H | undefined {
    const handle = this.#handles.get(fh);
    if (handle !== undefined || !CachedOpens.made(fh)) return handle;
    const cached = this.#cachedOpens, node = req.node;
    if (cached === undefined || node === undefined || this.#fs.cachedHandle === undefined) {
      return undefined;
    }
    const adopted = this.#fs.cachedHandle(node, node.type === S_IFDIR);
    this.#handles.set(fh, adopted);
    cached.adopt(fh);
    return adopted;
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
  #encodeEntry(
    req: Request,
    parent: NodeImpl,
    name: string,
    entry: Entry,
    extra: number,
  ): NodeImpl {
    const s = this.#scratchFor(OUT_HEADER_SIZE + ENTRY_OUT_SIZE + extra);
    const attr = entry.attr;
    const attrTimeout = entry.attrTimeout ?? this.#attrTimeout;
    encodeEntryOut(
      s,
      OUT_HEADER_SIZE,
      0n,
      entry.generation ?? 0,
      entry.entryTimeout ?? this.#entryTimeout,
      attrTimeout,
      attr,
    );
    const node = this.nodes.enter(parent, name, entry.key ?? String(attr.ino), attr.ino, attr.mode);
    this.#fs.entered?.(node, entry);
    encodeEntryNodeId(s, OUT_HEADER_SIZE, node.nodeId);
    if (entry.noXattrs) this.#noXattrs?.mark(node.nodeId, attrTimeout);
    this.#recordAttr(req, node.nodeId, OUT_HEADER_SIZE + 40, attrTimeout, entry.stable);
    return node;
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
    this.#endCached(parent as NodeImpl, name);
    encodeOutHeader(v, total, NotifyCode.INVAL_ENTRY, 0n);
    encodeNotifyInvalEntry(v, OUT_HEADER_SIZE, parent.nodeId, nameBytes.length);
    buf.set(nameBytes, OUT_HEADER_SIZE + NOTIFY_INVAL_ENTRY_SIZE);
    return this.#ended ? Promise.resolve(false) : this.#device.notify(buf);
  }

  /**
   * FUSE_NOTIFY_INVAL_INODE; offset -1 = attributes only, length 0 = to the end; `xattrsKept`:
   * the change was of contents only (see `MountedFuse.invalidateInode`).
   */
  invalidateInode(node: Node, offset = 0, length = 0, xattrsKept = false): Promise<boolean> {
    if (!xattrsKept) this.#noXattrs?.mark(node.nodeId, 0); // an xattr may have come with it
    this.#changed(node.nodeId);
    const total = OUT_HEADER_SIZE + NOTIFY_INVAL_INODE_SIZE;
    const buf = new Uint8Array(total);
    const v = new DataView(buf.buffer);
    encodeOutHeader(v, total, NotifyCode.INVAL_INODE, 0n);
    encodeNotifyInvalInode(v, OUT_HEADER_SIZE, node.nodeId, offset, length);
    return this.#ended ? Promise.resolve(false) : this.#device.notify(buf);
  }

  /**
   * FUSE_NOTIFY_STORE: `data` into the kernel's page cache of `node` at `offset` (whole pages,
   * or up to the end of the file, become up to date); true if the kernel took it.
   */
  storeData(node: Node, offset: number, data: Uint8Array): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    const total = OUT_HEADER_SIZE + NOTIFY_STORE_SIZE + data.length;
    // Large messages are built in buffers used again once written: a new one costs a page
    // fault per 4 KiB written to (15 µs each, measured on a VM), more than copying the data.
    const pooled = total > STORE_POOLED_FROM && total <= STORE_BUFFER_BYTES;
    const buf = (pooled ? this.#storeBuffers.pop() : undefined) ??
      new Uint8Array(pooled ? STORE_BUFFER_BYTES : total);
    const message = buf.subarray(0, total);
    const v = new DataView(buf.buffer);
    encodeOutHeader(v, total, NotifyCode.STORE, 0n);
    encodeNotifyStore(v, OUT_HEADER_SIZE, node.nodeId, offset, data.length);
    message.set(data, OUT_HEADER_SIZE + NOTIFY_STORE_SIZE);
    const sent = this.#device.notify(message);
    if (pooled) {
      const done = (): void => {
        if (this.#storeBuffers.length < STORE_BUFFERS_KEPT) this.#storeBuffers.push(buf);
      };
      sent.then(done, done);
    }
    return sent;
  }

  // -------------------------------------------------------------------------------------------
  // Requests without replies

  #forget(req: Request): void {
    const v = req.view, o = req.bodyOffset, n = req.bodyLength;
    if (req.opcode === Opcode.FORGET) {
      const count = decodeForgetIn(v, o, n);
      if (count !== undefined) this.#forgetOne(req.nodeId, count);
      return;
    }
    const batch = decodeBatchForgetIn(v, o, n);
    if (batch === undefined) return;
    if (batch.claimed > batch.present) {
      this.#log.warn(`FUSE: BATCH_FORGET claims ${batch.claimed} entries, has ${batch.present}`);
    }
    const count = Math.min(batch.claimed, batch.present);
    for (let i = 0; i < count; i++) {
      this.#forgetOne(forgetOneNodeId(v, o, i), forgetOneCount(v, o, i));
    }
  }

  #forgetOne(nodeId: bigint, count: bigint): void {
    const n = count > 0xffffffffn ? 0xffffffff : Number(count);
    const dropped = this.nodes.forget(nodeId, n);
    if (dropped) {
      this.#forgetCached(nodeId);
      try {
        this.#fs.forget?.(dropped);
      } catch (error) {
        this.#log.error(`FUSE filesystem forget failed: ${error}`);
      }
    }
  }

  #interrupt(req: Request): void {
    const target = decodeInterruptIn(req.view, req.bodyOffset, req.bodyLength);
    if (target === undefined) return;
    const victim = this.#inflight.get(target);
    if (victim) {
      victim.interrupt();
      return;
    }
    // Not (yet) seen: EAGAIN makes the kernel queue the interrupt again.
    if (!this.#ended) this.#replyError(req, ERRNO.EAGAIN);
  }

  // -------------------------------------------------------------------------------------------
  // INIT

  async #init(req: Request, init: InitIn): Promise<void> {
    if (init.major > FUSE_KERNEL_VERSION) {
      // The kernel retries with our major version after this short reply.
      const s = this.#scratchFor(OUT_HEADER_SIZE + INIT_VERSION_OUT_SIZE);
      encodeInitVersionOut(s, OUT_HEADER_SIZE, FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION);
      this.#replyScratch(req, INIT_VERSION_OUT_SIZE);
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
      InitFlag.AUTO_INVAL_DATA | InitFlag.DO_READDIRPLUS |
      InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES | InitFlag.ASYNC_DIO;
    if (this.#writeback) want |= InitFlag.WRITEBACK_CACHE;
    if (this.#cacheSymlinks) want |= InitFlag.CACHE_SYMLINKS;
    if (this.#posixAcl) want |= InitFlag.POSIX_ACL;
    want |= this.#device.initFlags ?? 0n;
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
    const s = this.#scratchFor(OUT_HEADER_SIZE + INIT_OUT_SIZE);
    this.#scratch.fill(0, OUT_HEADER_SIZE, OUT_HEADER_SIZE + INIT_OUT_SIZE);
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
    const e = this.#replyScratch(req, INIT_OUT_SIZE);
    if (e !== 0) {
      this.#readyReject(new Error(`INIT reply failed: ${errnoOf(e).name}`));
      return;
    }
    if (this.#debug) {
      this.#log.debug(
        `FUSE: kernel 7.${init.minor}, agreed 7.${this.#proto}, flags 0x${flags.toString(16)}`,
      );
    }
    this.#device.initialized?.(flags);
    this.#readyResolve();
  }

  // -------------------------------------------------------------------------------------------
  // The dispatch table: opcode → record (preamble parameters and handler)

  static #ops(): (Op | undefined)[] {
    const t: (Op | undefined)[] = [];
    t[Opcode.INIT] = op<InitIn>({
      min: INIT_IN_MIN_SIZE,
      node: NodeUse.NONE,
      decode: decodeInitIn,
      run: (s, req, init) => s.#init(req, init),
    });
    t[Opcode.DESTROY] = op({
      node: NodeUse.NONE,
      run: async (s, req) => {
        await s.#destroy();
        s.#replyScratch(req, 0);
      },
    });
    t[Opcode.LOOKUP] = op({
      names: Names.FILE,
      method: "lookup",
      run: (s, req) => {
        const result = s.#fs.lookup!(req, req.node!, req.name);
        if (!(result instanceof Promise)) return s.#lookupDone(req, result);
        return result.then((v) => s.#lookupDone(req, v), (e) => s.#fail(req, e));
      },
    });
    t[Opcode.GETATTR] = op<GetattrIn>({
      min: GETATTR_IN_SIZE,
      decode: decodeGetattrIn,
      method: "getattr",
      run: (s, req, { flags, fh }) => {
        const handle = (flags & FUSE_GETATTR_FH) !== 0 ? s.#handle(fh, req) : undefined;
        return s.#then(req, s.#fs.getattr!(req, req.node!, handle), Session.#attr);
      },
    });
    t[Opcode.SETATTR] = op<SetattrIn>({
      changes: true,
      min: SETATTR_IN_SIZE,
      decode: decodeSetattrIn,
      method: "setattr",
      run: (s, req, inp) => {
        const handle = (inp.valid & FATTR_FH) !== 0 ? s.#handle(inp.fh, req) : undefined;
        const r = s.#fs.setattr!(req, req.node!, setAttrChanges(inp), handle);
        return s.#then(req, r, Session.#setattrDone);
      },
    });
    t[Opcode.READLINK] = op({
      method: "readlink",
      run: (s, req) => s.#then(req, s.#fs.readlink!(req, req.node!), Session.#readlinkDone),
    });
    t[Opcode.SYMLINK] = op({
      changes: true,
      names: Names.FILE_TARGET,
      method: "symlink",
      run: (s, req) =>
        s.#then(req, s.#fs.symlink!(req, req.node!, req.name, req.name2), Session.#entry),
    });
    t[Opcode.MKNOD] = op<MknodIn>({
      changes: true,
      min: MKNOD_IN_SIZE,
      names: Names.FILE,
      decode: decodeMknodIn,
      method: "mknod",
      run: (s, req, { mode, rdev, umask }) =>
        s.#then(req, s.#fs.mknod!(req, req.node!, req.name, mode, rdev, umask), Session.#entry),
    });
    t[Opcode.MKDIR] = op<MkdirIn>({
      changes: true,
      min: MKDIR_IN_SIZE,
      names: Names.FILE,
      decode: decodeMkdirIn,
      method: "mkdir",
      run: (s, req, { mode, umask }) =>
        s.#then(req, s.#fs.mkdir!(req, req.node!, req.name, mode, umask), Session.#entry),
    });
    t[Opcode.UNLINK] = op({
      changes: true,
      names: Names.FILE,
      method: "unlink",
      run: (s, req) => s.#then(req, s.#fs.unlink!(req, req.node!, req.name), Session.#removed),
    });
    t[Opcode.RMDIR] = op({
      changes: true,
      names: Names.FILE,
      method: "rmdir",
      run: (s, req) => s.#then(req, s.#fs.rmdir!(req, req.node!, req.name), Session.#removed),
    });
    const rename: Handler<RenameIn> = (s, req, { flags }) => {
      const r = s.#fs.rename!(req, req.node!, req.name, req.node2!, req.name2, flags);
      return s.#then(req, r, Session.#renamed);
    };
    t[Opcode.RENAME] = op<RenameIn>({
      changes: true,
      min: RENAME_IN_SIZE,
      names: Names.FILE_PAIR,
      decode: decodeRenameIn,
      node2: (i) => i.newDir,
      method: "rename",
      run: rename,
    });
    t[Opcode.RENAME2] = op<RenameIn>({
      changes: true,
      min: RENAME2_IN_SIZE,
      names: Names.FILE_PAIR,
      decode: decodeRename2In,
      node2: (i) => i.newDir,
      method: "rename",
      run: rename,
    });
    t[Opcode.LINK] = op<LinkIn>({
      changes: true,
      min: LINK_IN_SIZE,
      names: Names.FILE,
      decode: decodeLinkIn,
      node2: (i) => i.oldNodeId,
      method: "link",
      // The request's node is the new parent; node2 the linked node.
      run: (s, req) =>
        s.#then(req, s.#fs.link!(req, req.node2!, req.node!, req.name), Session.#entry),
    });
    t[Opcode.OPEN] = op<OpenIn>({
      min: OPEN_IN_SIZE,
      decode: decodeOpenIn,
      method: "open",
      run: (s, req, { flags }) => {
        if ((flags & O_TRUNC) !== 0) s.#changing(req); // a truncating open changes the file
        return s.#then(req, s.#fs.open!(req, req.node!, flags & s.#openFlagMask), Session.#opened);
      },
    });
    t[Opcode.OPENDIR] = op<OpenIn>({
      min: OPEN_IN_SIZE,
      decode: decodeOpenIn,
      // Without opendir: success with no handle (fh 0).
      run: (s, req, { flags }) => {
        if (!s.#fs.opendir) return Session.#openedNoHandle(s, req);
        return s.#then(
          req,
          s.#fs.opendir(req, req.node!, flags & s.#openFlagMask),
          Session.#opened,
        );
      },
    });
    t[Opcode.CREATE] = op<CreateIn>({
      changes: true,
      min: CREATE_IN_SIZE,
      names: Names.FILE,
      decode: decodeCreateIn,
      method: "create",
      run: (s, req, { flags, mode, umask }) => {
        const r = s.#fs.create!(req, req.node!, req.name, mode, flags & s.#openFlagMask, umask);
        return s.#then(req, r, Session.#created);
      },
    });
    t[Opcode.READ] = op<ReadIn>({
      min: READ_IN_MIN_SIZE,
      decode: decodeReadIn,
      method: "read",
      run: (s, req, { fh, offset, size }) => {
        const r = s.#fs.read!(req, req.node!, s.#handle(fh, req), offset, Math.min(size, 64 * MiB));
        return s.#then(req, r, Session.#read);
      },
    });
    t[Opcode.WRITE] = op<WriteIn>({
      changes: true,
      min: WRITE_IN_SIZE,
      decode: decodeWriteIn,
      method: "write",
      run: (s, req, inp) => {
        // A copy: the request buffer is reused at once (and is shared memory).
        const at = req.bodyOffset + WRITE_IN_SIZE;
        const data = req.bytes.slice(at, at + inp.size);
        const info = {
          writeFlags: inp.writeFlags,
          lockOwner: inp.lockOwner,
          flags: inp.flags & s.#openFlagMask,
          answered: req.answeredAhead,
        };
        const r = s.#fs.write!(req, req.node!, s.#handle(inp.fh, req), inp.offset, data, info);
        if (req.answeredAhead) {
          // Taken on (queued, or failed and kept): the reader may answer its bytes again.
          const refund = (): void => s.#earlyWrites?.refund(inp.fh, inp.size);
          if (r instanceof Promise) r.then(refund, refund);
          else refund();
        }
        return s.#then(req, r, Session.#written);
      },
    });
    t[Opcode.STATFS] = op({
      // Without statfs, like libfuse: an empty filesystem rather than an error (df works).
      run: (s, req) =>
        s.#then(req, s.#fs.statfs?.(req, req.node!) ?? EMPTY_STATFS, Session.#statfs),
    });
    t[Opcode.RELEASE] = op<ReleaseIn>({
      min: RELEASE_IN_MIN_SIZE,
      node: NodeUse.OPTIONAL,
      decode: decodeReleaseIn,
      run: (s, req, inp) => s.#release(req, inp, false),
    });
    t[Opcode.RELEASEDIR] = op<ReleaseIn>({
      min: RELEASE_IN_MIN_SIZE,
      node: NodeUse.OPTIONAL,
      decode: decodeReleaseIn,
      run: (s, req, inp) => s.#release(req, inp, true),
    });
    t[Opcode.FSYNC] = op<FsyncIn>({
      min: FSYNC_IN_SIZE,
      decode: decodeFsyncIn,
      method: "fsync",
      run: (s, req, { fh, datasync }) =>
        s.#then(req, s.#fs.fsync!(req, req.node!, s.#handle(fh, req), datasync), Session.#empty),
    });
    t[Opcode.FSYNCDIR] = op<FsyncIn>({
      min: FSYNC_IN_SIZE,
      decode: decodeFsyncIn,
      method: "fsyncdir",
      run: (s, req, { fh, datasync }) =>
        s.#then(req, s.#fs.fsyncdir!(req, req.node!, s.#handle(fh, req), datasync), Session.#empty),
    });
    t[Opcode.FLUSH] = op<FlushIn>({
      min: FLUSH_IN_SIZE,
      decode: decodeFlushIn,
      method: "flush",
      run: (s, req, { fh, lockOwner }) =>
        s.#then(req, s.#fs.flush!(req, req.node!, s.#handle(fh, req), lockOwner), Session.#empty),
    });
    t[Opcode.SETXATTR] = op<SetxattrIn>({
      changes: true,
      min: SETXATTR_IN_SIZE,
      names: Names.XATTR,
      decode: decodeSetxattrIn,
      method: "setxattr",
      run: (s, req, { size, flags }) => {
        if (req.name === "" || req.name.length > NAME_MAX) return s.#replyError(req, ERRNO.ERANGE);
        if (size > XATTR_SIZE_MAX || req.namesEnd + size > req.bodyLength) {
          return s.#replyError(req, ERRNO.E2BIG);
        }
        const start = req.bodyOffset + req.namesEnd;
        const value = req.bytes.slice(start, start + size);
        s.#noXattrs?.mark(req.node!.nodeId, 0);
        return s.#then(
          req,
          s.#fs.setxattr!(req, req.node!, req.name, value, flags),
          Session.#empty,
        );
      },
    });
    t[Opcode.GETXATTR] = op<GetxattrIn>({
      min: GETXATTR_IN_SIZE,
      names: Names.XATTR,
      decode: decodeGetxattrIn,
      method: "getxattr",
      run: (s, req) => s.#then(req, s.#fs.getxattr!(req, req.node!, req.name), Session.#sized),
    });
    t[Opcode.LISTXATTR] = op<GetxattrIn>({
      min: GETXATTR_IN_SIZE,
      decode: decodeGetxattrIn,
      method: "listxattr",
      run: (s, req) => s.#then(req, s.#fs.listxattr!(req, req.node!), Session.#xattrNames),
    });
    t[Opcode.REMOVEXATTR] = op({
      changes: true,
      names: Names.XATTR,
      method: "removexattr",
      run: (s, req) => {
        s.#noXattrs?.mark(req.node!.nodeId, 0);
        return s.#then(req, s.#fs.removexattr!(req, req.node!, req.name), Session.#empty);
      },
    });
    const readdir = (plus: boolean): Handler<ReadIn> => (s, req, { fh, offset }) => {
      const r = s.#fs.readdir!(req, req.node!, s.#handle(fh, req), offset, plus);
      return s.#then(req, r, Session.#dirents);
    };
    t[Opcode.READDIR] = op<ReadIn>({
      min: READ_IN_MIN_SIZE,
      decode: decodeReadIn,
      method: "readdir",
      run: readdir(false),
    });
    t[Opcode.READDIRPLUS] = op<ReadIn>({
      min: READ_IN_MIN_SIZE,
      decode: decodeReadIn,
      method: "readdir",
      run: readdir(true),
    });
    t[Opcode.ACCESS] = op<AccessIn>({
      min: ACCESS_IN_SIZE,
      decode: decodeAccessIn,
      method: "access",
      run: (s, req, { mask }) => s.#then(req, s.#fs.access!(req, req.node!, mask), Session.#empty),
    });
    t[Opcode.FALLOCATE] = op<FallocateIn>({
      changes: true,
      min: FALLOCATE_IN_SIZE,
      decode: decodeFallocateIn,
      method: "fallocate",
      run: (s, req, { fh, offset, length, mode }) => {
        const r = s.#fs.fallocate!(req, req.node!, s.#handle(fh, req), offset, length, mode);
        return s.#then(req, r, Session.#empty);
      },
    });
    t[Opcode.LSEEK] = op<LseekIn>({
      min: LSEEK_IN_SIZE,
      decode: decodeLseekIn,
      method: "lseek",
      run: (s, req, { fh, offset, whence }) =>
        s.#then(
          req,
          s.#fs.lseek!(req, req.node!, s.#handle(fh, req), offset, whence),
          Session.#seeked,
        ),
    });
    t[Opcode.COPY_FILE_RANGE] = op<CopyFileRangeIn>({
      changes: true,
      min: COPY_FILE_RANGE_IN_SIZE,
      decode: decodeCopyFileRangeIn,
      node2: (i) => i.nodeIdOut,
      method: "copyFileRange",
      run: (s, req, i) => {
        const r = s.#fs.copyFileRange!(
          req,
          req.node!,
          s.#handle(i.fhIn, req),
          i.offsetIn,
          req.node2!,
          s.#handles.get(i.fhOut), // written: never a number the reader made
          i.offsetOut,
          i.length,
          i.flags,
        );
        return s.#then(req, r, Session.#copied);
      },
    });
    // Everything else (GETLK/SETLK/SETLKW, BMAP, IOCTL, POLL, SYNCFS, TMPFILE, ...) has no
    // record: ENOSYS. Locks stay local to the kernel since POSIX_LOCKS/FLOCK_LOCKS are off.
    return t;
  }

  static readonly #OPS: readonly (Op | undefined)[] = Session.#ops();

  // -------------------------------------------------------------------------------------------
  // Handlers too long for the table

  #lookupDone(req: Request, value: Entry | Errno): void {
    if (value instanceof Errno) {
      const timeout = value instanceof Absent ? value.timeout : this.#negativeTimeout;
      if (value.code === ERRNO.ENOENT && timeout > 0) {
        const s = this.#scratchFor(OUT_HEADER_SIZE + ENTRY_OUT_SIZE);
        encodeEntryOut(s, OUT_HEADER_SIZE, 0n, 0, timeout, 0, undefined);
        this.#replyScratch(req, ENTRY_OUT_SIZE);
        return;
      }
      this.#replyError(req, value.code);
      return;
    }
    try {
      Session.#entry(this as Session, req, value);
    } catch (error) {
      this.#fail(req, error);
    }
  }

  /** RELEASE/RELEASEDIR: the handle goes in any case; the answer is always success. */
  #release(req: Request, inp: ReleaseIn, dir: boolean): void | Promise<void> {
    if (!dir) this.#earlyWrites?.end(inp.fh);
    const had = this.#handles.has(inp.fh);
    const handle = this.#handles.get(inp.fh) as H;
    this.#handles.delete(inp.fh);
    if (had && CachedOpens.made(inp.fh)) this.#cachedOpens?.released(inp.fh);
    const node = req.node;
    if (node === undefined || !had) return void this.#replyScratch(req, 0);
    const r = dir
      ? this.#fs.releasedir?.(req, node, handle)
      : this.#fs.release?.(req, node, handle, {
        flags: inp.flags,
        releaseFlags: inp.releaseFlags,
        lockOwner: inp.lockOwner,
      });
    if (r instanceof Promise) {
      return r.then(() => void this.#replyScratch(req, 0), (e) => {
        this.#log.error(`FUSE release failed: ${e}`);
        this.#replyScratch(req, 0);
      });
    }
    this.#replyScratch(req, 0);
  }

  /** READDIR(PLUS): packs as many entries as fit in the kernel's buffer. */
  #replyDirents(req: Request, entries: DirEntry[]): void {
    const node = req.node!;
    const plus = req.opcode === Opcode.READDIRPLUS;
    const size = Math.min((req.input as ReadIn).size, MiB);
    const s = this.#scratchFor(OUT_HEADER_SIZE + size);
    const bytes = this.#scratch;
    let at = OUT_HEADER_SIZE;
    const end = OUT_HEADER_SIZE + size;
    const entered: NodeImpl[] = [];
    try {
      for (const d of entries) {
        // The name goes straight to its place; the entry is written around it if it fits.
        const nameAt = at + (plus ? DIRENTPLUS_HEADER_SIZE : DIRENT_HEADER_SIZE);
        const length = encodeName(bytes, nameAt, Math.min(end, nameAt + NAME_MAX), d.name);
        if (length < 0) {
          if (end - nameAt >= NAME_MAX) continue; // longer than NAME_MAX: never shown
          break;
        }
        if (length === 0) continue;
        const need = direntSize(length, plus);
        if (at + need > end) break;
        const type = direntType(d.mode);
        if (plus) {
          const e = d.entry;
          const dot = d.name === "." || d.name === "..";
          if (e && !dot) {
            const attrTimeout = e.attrTimeout ?? this.#attrTimeout;
            encodeEntryOut(
              s,
              at,
              0n,
              e.generation ?? 0,
              e.entryTimeout ?? this.#entryTimeout,
              attrTimeout,
              e.attr,
            );
            const key = e.key ?? String(e.attr.ino);
            const child = this.nodes.enter(node, d.name, key, e.attr.ino, e.attr.mode);
            this.#fs.entered?.(child, e);
            encodeEntryNodeId(s, at, child.nodeId);
            if (e.noXattrs) this.#noXattrs?.mark(child.nodeId, attrTimeout);
            this.#recordAttr(req, child.nodeId, at + 40, attrTimeout, e.stable);
            entered.push(child);
          } else {
            encodeEntryOut(s, at, 0n, 0, 0, 0, undefined);
          }
          encodeDirent(bytes, s, at + ENTRY_OUT_SIZE, d.ino, d.next, type, length);
        } else {
          encodeDirent(bytes, s, at, d.ino, d.next, type, length);
        }
        at += need;
      }
      const e = this.#replyScratch(req, at - OUT_HEADER_SIZE);
      if (e === ERRNO.ENOENT) { for (const child of entered) this.#dropLookup(child); }
    } catch (error) {
      for (const child of entered) this.#dropLookup(child);
      throw error;
    }
  }
}

/** The statfs answer when the filesystem has no statfs. */
const EMPTY_STATFS: StatFs = {
  blocks: 0,
  bfree: 0,
  bavail: 0,
  files: 0,
  ffree: 0,
  bsize: 4096,
  namelen: NAME_MAX,
  frsize: 4096,
};

/** SETATTR's requested changes, from the fields its `valid` bits mark. */
function setAttrChanges(inp: SetattrIn): SetAttrChanges {
  const c: SetAttrChanges = {};
  const v = inp.valid;
  if (v & FATTR_MODE) c.mode = inp.mode & MODE_PERM_MASK;
  if (v & FATTR_UID) c.uid = inp.uid;
  if (v & FATTR_GID) c.gid = inp.gid;
  if (v & FATTR_SIZE) c.size = inp.size;
  if (v & FATTR_ATIME_NOW) c.atime = "now";
  else if (v & FATTR_ATIME) c.atime = inp.atime;
  if (v & FATTR_MTIME_NOW) c.mtime = "now";
  else if (v & FATTR_MTIME) c.mtime = inp.mtime;
  if (v & FATTR_CTIME) c.ctime = inp.ctime;
  if (v & FATTR_KILL_SUIDGID) c.killSuidgid = true;
  return c;
}

/** The root node id (for tests). */
export const ROOT_ID: bigint = FUSE_ROOT_ID;
