/**
 * The filesystem interface served by the FUSE layer (node based, like go-fuse's `fs`).
 *
 * An implementation gets `Node` objects the layer keeps in its inode table. Every method is
 * optional (the session looks them up once, when it is created); a missing method answers
 * ENOSYS (exceptions: `opendir`/`releasedir` default to
 * success with an `undefined` handle, `forget`/`init`/`destroy` default to doing nothing).
 * Methods return a value or an `Errno` (sync or as a promise). A thrown exception is logged and
 * answered with EIO; a thrown `Errno` is answered with that errno.
 *
 * ## Paths (for path-based implementations)
 * The layer records, for each node, the directory entry it was reached through: `parent` and
 * `name`. `node.path` walks that chain ("/" for the root, "/a/b" below it). Invariants:
 * - A reply carrying an `Entry` for (parent, name) — lookup, create, mkdir, mknod, symlink,
 *   link, readdirplus — makes (parent, name) the node's current name ("most recently seen").
 * - A successful `rename` moves the node found at (parent, name) to (newParent, newName)
 *   before the reply is sent; a node previously at the target loses that name; with
 *   RENAME_EXCHANGE the two swap. Paths of everything below a renamed directory follow, since
 *   `path` is computed from the chain on every call.
 * - A successful `unlink`/`rmdir` removes the name. A node with hard links keeps its other known
 *   names (one of them becomes current); a node with no known name left has
 *   `path === undefined` (open handles still work; implementations must use the handle).
 * - A lookup of (parent, name) answering a different identity (`Entry.key`) than the node the
 *   layer had there detaches the old node from that name (the object changed behind our back).
 * - The kernel serialises rename/unlink/create in one directory, but an operation on a node
 *   can race with a rename of one of its ancestors; the path read at the start of the
 *   operation may then be stale (the implementation sees ENOENT, which is what a local
 *   filesystem gives in the same race too).
 *
 * ## Identity
 * `Entry.key` (default: `attr.ino` in decimal) identifies the object: entries with the same key
 * share one FUSE node, so hard links show as one inode to the kernel. A path-based
 * implementation spanning several devices should use e.g. `${dev}:${ino}`. FUSE node ids are
 * the layer's (never reused in a session); `attr.ino` is passed through to `stat()` unchanged.
 *
 * ## Names
 * Names arrive as strings decoded from UTF-8. A name from the kernel that is not valid UTF-8
 * is refused by the layer with EILSEQ before the implementation is called (and names over
 * 255 bytes with ENAMETOOLONG), so implementations never see a lossy name. Names never
 * contain "/" or NUL and are never "." or "..".
 *
 * @module
 */

import { ERRNO } from "../linux/mod.ts";
import { Errno } from "./errno.ts";

/**
 * LOOKUP's "no such name" that the kernel may keep (a negative entry) for `timeout` seconds
 * rather than the mount's negative timeout. An `Errno` of code ENOENT, but not the ENOENT
 * singleton: test a lookup's result with `isErrno` and `code`.
 */
export class Absent extends Errno {
  readonly timeout: number;
  constructor(timeout: number) {
    super(ERRNO.ENOENT, "ENOENT");
    this.timeout = timeout;
  }
}

/** Seconds since the epoch plus nanoseconds (0..999,999,999). */
export interface Timestamp {
  sec: number;
  nsec: number;
}

/** File attributes, as `stat(2)` shows them. */
export interface Attr {
  /** st_ino shown to users (the implementation's inode number; hard links share it). */
  ino: bigint;
  /** File type and permission bits (S_IFREG | 0o644 ...). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  /** Device number for S_IFCHR/S_IFBLK (Linux `makedev` encoding), else 0. */
  rdev: number;
  size: number;
  /** 512-byte blocks allocated. */
  blocks: number;
  /** Preferred I/O size; default 4096. */
  blksize?: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
}

/** A directory entry answer (lookup, create, mkdir, ...). Timeouts in seconds. */
export interface Entry {
  attr: Attr;
  /** Object identity; entries with equal keys share a FUSE node. Default `String(attr.ino)`. */
  key?: string;
  /** Inode generation reported to the kernel (default 0; node ids are never reused). */
  generation?: number;
  /** How long the kernel may cache the name (default: mount option `entryTimeout`). */
  entryTimeout?: number;
  /** How long the kernel may cache the attributes (default: mount option `attrTimeout`). */
  attrTimeout?: number;
  /**
   * The inode has no extended attributes: for the attribute timeout, GETXATTR on it is answered
   * ENODATA by the device's reader thread without calling `getxattr` (SETXATTR/REMOVEXATTR
   * end that; see no_xattrs.ts). Off while tracing.
   */
  noXattrs?: boolean;
  /**
   * The attributes stay as given until the filesystem invalidates the inode (or a request
   * changes it): for the attribute timeout, GETATTR is answered with them by the device's
   * reader thread without calling `getattr` (see cached_attrs.ts). Off while tracing.
   */
  stable?: boolean;
  /**
   * For an entry made by create, mkdir, mknod, symlink or link: the directory's attributes
   * right after (as `DirChanged.dir`).
   */
  dir?: AttrResult;
}

/** A getattr/setattr answer. */
export interface AttrResult {
  attr: Attr;
  /** Seconds the kernel may cache it (default: mount option `attrTimeout`). */
  timeout?: number;
  /** As `Entry.noXattrs`. */
  noXattrs?: boolean;
  /** As `Entry.stable`. */
  stable?: boolean;
}

/**
 * What an unlink or rmdir may answer besides success: the directory's attributes right after
 * the change. The kernel drops them when the change is answered and asks GETATTR at the next
 * permission check; stable ones (`AttrResult.stable`) let the device's reader answer it.
 */
export interface DirChanged {
  dir: AttrResult;
}

/** An open/opendir answer; the flags tell the kernel how to cache. */
export interface Opened<H = unknown> {
  /** The implementation's handle, given back on read/write/release/... of this open file. */
  handle: H;
  /** Bypass the page cache for this open file (FOPEN_DIRECT_IO). */
  directIo?: boolean;
  /** Keep the page cache from earlier opens (FOPEN_KEEP_CACHE). */
  keepCache?: boolean;
  /** The file is not seekable (FOPEN_NONSEEKABLE). */
  nonSeekable?: boolean;
  /** opendir only: the kernel may cache the directory listing (FOPEN_CACHE_DIR). */
  cacheDir?: boolean;
  /** Do not send FLUSH on close (FOPEN_NOFLUSH). */
  noFlush?: boolean;
  /**
   * For this many seconds, opens of the node with the same flags may be answered the same way
   * without asking (needs `cachedHandle`); the session ends it early when the node changes.
   */
  reuse?: number;
  /**
   * Bytes of writes through this open file that may be answered before the filesystem sees
   * them (on the device's reader thread; the session hands each on with `WriteInfo.answered`).
   * Only for a filesystem that keeps such a write's failure for the next flush or fsync.
   */
  writeAhead?: number;
  /**
   * A FLUSH of this open file before any WRITE through it has nothing to report: the session
   * may answer it (success) without the filesystem (on the device's reader thread).
   */
  quietFlush?: boolean;
}

/** A create answer: the new entry plus its open file. */
export interface Created<H = unknown> extends Opened<H> {
  entry: Entry;
}

/** One directory entry produced by readdir. */
export interface DirEntry {
  name: string;
  ino: bigint;
  /** File type bits (S_IFMT part of st_mode); 0 if unknown. */
  mode: number;
  /**
   * Offset cookie of the NEXT entry: readdir called with this offset continues right after this
   * entry. Must be > 0 and stable for the open directory handle.
   */
  next: number;
  /**
   * READDIRPLUS only: the entry's attributes, which the kernel then caches as if looked up
   * (the layer counts the lookup). Omit to let the kernel LOOKUP the name itself.
   * Ignored for "." and "..".
   */
  entry?: Entry;
}

/** Changes requested by SETATTR; absent fields are unchanged. */
export interface SetAttrChanges {
  /** Permission bits (and S_ISUID/S_ISGID/S_ISVTX); never file type bits. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** New size (truncate / extend). */
  size?: number;
  /** "now" means the current time of the implementation's clock (utimensat UTIME_NOW). */
  atime?: Timestamp | "now";
  mtime?: Timestamp | "now";
  ctime?: Timestamp;
  /** The kernel asks to clear S_ISUID/S_ISGID as part of this change. */
  killSuidgid?: boolean;
}

/** statfs(2) answer. */
export interface StatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** Who asked, and a signal aborted when the kernel INTERRUPTs the request. */
export interface RequestContext {
  readonly uid: number;
  readonly gid: number;
  /** Thread-group id of the caller (0 for kernel-internal requests). */
  readonly pid: number;
  /** The request's unique id (as in the debug trace). */
  readonly unique: bigint;
  readonly opcode: number;
  /** Aborted on FUSE_INTERRUPT for this request; answer EINTR (or finish) promptly. */
  readonly signal: AbortSignal;
}

/** A node (inode) in the layer's table. Owned by the layer; read-only for implementations. */
export interface Node {
  /** FUSE node id (1 is the root). Never reused within a session. */
  readonly nodeId: bigint;
  /** Identity key (see `Entry.key`); "" for the root. */
  readonly key: string;
  /** st_ino of the last attributes the implementation reported for it. */
  readonly ino: bigint;
  /** Parent directory node of the current name; undefined for the root and unlinked nodes. */
  readonly parent: Node | undefined;
  /** Current name in `parent` ("" for the root or when unlinked). */
  readonly name: string;
  /** Current path from the mount root: "/" for the root, "/a/b" below; undefined if unlinked. */
  readonly path: string | undefined;
  /** Slot for the implementation's own per-node data; the layer never reads it. */
  data: unknown;
}

/** A value, or an errno, possibly later. */
export type Result<T> = T | Errno | Promise<T | Errno>;

/** Extra information on WRITE. */
export interface WriteInfo {
  /** Open flags of the file (O_APPEND, ...), as given at open. */
  flags: number;
  /** FUSE_WRITE_* flags (FUSE_WRITE_CACHE for writeback writes, FUSE_WRITE_KILL_SUIDGID). */
  writeFlags: number;
  lockOwner: bigint;
  /**
   * The kernel was already told the whole write succeeded (see `Opened.writeAhead`): the
   * answer is not sent; a failure must be kept for the handle's next flush or fsync.
   */
  answered?: boolean;
}

/** Extra information on RELEASE. */
export interface ReleaseInfo {
  flags: number;
  releaseFlags: number;
  lockOwner: bigint;
}

/** What the kernel offered at INIT and what was agreed. */
export interface InitInfo {
  kernelMajor: number;
  kernelMinor: number;
  /** Capability flags the kernel offered (64 bits: flags | flags2 << 32). */
  kernelFlags: bigint;
  /** Capability flags the layer enabled. */
  flags: bigint;
  maxWrite: number;
  maxReadahead: number;
  writebackCache: boolean;
}

/**
 * The filesystem an implementation provides. `H` is its open-file/open-dir handle type.
 * See the module documentation for path and identity invariants.
 */
export interface FileSystem<H = unknown> {
  /** Called once after INIT was agreed, before any other request is served. */
  init?(info: InitInfo): void | Promise<void>;
  /** Called when the kernel ends the session (DESTROY or unmount). */
  destroy?(): void | Promise<void>;

  /** Resolve `name` in directory `parent`. ENOENT may be cached per `negativeTimeout`. */
  lookup?(ctx: RequestContext, parent: Node, name: string): Result<Entry>;
  /** The kernel forgot the node entirely; the layer dropped it from its table. */
  forget?(node: Node): void;
  /**
   * `entry` is being told to the kernel as `node` (an entry answer, or one entry of a
   * READDIRPLUS answer): called once per entry sent, as its answer is written. Entries a
   * READDIRPLUS answer could not hold are not told.
   */
  entered?(node: Node, entry: Entry): void;
  getattr?(ctx: RequestContext, node: Node, handle: H | undefined): Result<AttrResult>;
  setattr?(
    ctx: RequestContext,
    node: Node,
    changes: SetAttrChanges,
    handle: H | undefined,
  ): Result<AttrResult>;
  /** The symlink target (as stored; not resolved). */
  readlink?(ctx: RequestContext, node: Node): Result<string>;
  symlink?(ctx: RequestContext, parent: Node, name: string, target: string): Result<Entry>;
  /** `mode` includes the file type (S_IFREG/S_IFIFO/S_IFCHR/...), umask already applied. */
  mknod?(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    rdev: number,
    umask: number,
  ): Result<Entry>;
  /** `mode` is permission bits (and S_ISVTX), umask already applied by the kernel. */
  mkdir?(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    umask: number,
  ): Result<Entry>;
  unlink?(ctx: RequestContext, parent: Node, name: string): Result<void | DirChanged>;
  rmdir?(ctx: RequestContext, parent: Node, name: string): Result<void | DirChanged>;
  /** `flags`: 0 or RENAME_NOREPLACE / RENAME_EXCHANGE / RENAME_WHITEOUT. */
  rename?(
    ctx: RequestContext,
    parent: Node,
    name: string,
    newParent: Node,
    newName: string,
    flags: number,
  ): Result<void>;
  /** New hard link to `node` at (newParent, newName); answer the node's entry (nlink updated). */
  link?(ctx: RequestContext, node: Node, newParent: Node, newName: string): Result<Entry>;

  /**
   * `flags` are the open(2) flags (O_CREAT/O_EXCL/O_NOCTTY removed by the kernel). With the
   * writeback cache the layer also removes O_APPEND: the kernel then positions appends itself
   * (and it may READ through a handle opened O_WRONLY to fill partial pages).
   */
  open?(ctx: RequestContext, node: Node, flags: number): Result<Opened<H>>;
  /** Atomic create+open; `mode` includes S_IFREG, umask applied. flags include O_CREAT, maybe O_EXCL. */
  create?(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    flags: number,
    umask: number,
  ): Result<Created<H>>;
  /** Up to `size` bytes at `offset`; shorter only at end of file (empty = EOF). */
  read?(
    ctx: RequestContext,
    node: Node,
    handle: H,
    offset: number,
    size: number,
  ): Result<Uint8Array>;
  /** Answer the number of bytes written. `data` is only valid until the promise settles. */
  write?(
    ctx: RequestContext,
    node: Node,
    handle: H,
    offset: number,
    data: Uint8Array,
    info: WriteInfo,
  ): Result<number>;
  /** Called on each close(2) of a descriptor (may be several per open). */
  flush?(ctx: RequestContext, node: Node, handle: H, lockOwner: bigint): Result<void>;
  /** Last close of an open file; the answer is not reported to anyone. */
  release?(ctx: RequestContext, node: Node, handle: H, info: ReleaseInfo): Result<void>;
  fsync?(ctx: RequestContext, node: Node, handle: H, datasync: boolean): Result<void>;
  /** `mode`: FALLOC_FL_* flags (0 = allocate and extend). */
  fallocate?(
    ctx: RequestContext,
    node: Node,
    handle: H,
    offset: number,
    length: number,
    mode: number,
  ): Result<void>;
  /** SEEK_DATA (3) or SEEK_HOLE (4) (the kernel does SEEK_SET/CUR/END itself); answer the offset. */
  lseek?(
    ctx: RequestContext,
    node: Node,
    handle: H,
    offset: number,
    whence: number,
  ): Result<number>;
  /** Answer the number of bytes copied. */
  copyFileRange?(
    ctx: RequestContext,
    nodeIn: Node,
    handleIn: H,
    offsetIn: number,
    nodeOut: Node,
    handleOut: H,
    offsetOut: number,
    length: number,
    flags: number,
  ): Result<number>;

  opendir?(ctx: RequestContext, node: Node, flags: number): Result<Opened<H>>;
  /**
   * The handle of an open the session answered itself (repeating an `Opened.reuse` answer),
   * asked when a request on it needs one. No I/O: what the handle needs is fetched on use.
   */
  cachedHandle?(node: Node, dir: boolean): H;
  /**
   * Entries from offset cookie `offset` on (0 = from the start). The layer packs as many as fit
   * and calls again with the `next` cookie of the last one it sent; answer [] at the end.
   * Include "." and ".." to have them listed. `plus`: READDIRPLUS, fill `entry` where cheap.
   */
  readdir?(
    ctx: RequestContext,
    node: Node,
    handle: H,
    offset: number,
    plus: boolean,
  ): Result<DirEntry[]>;
  releasedir?(ctx: RequestContext, node: Node, handle: H): Result<void>;
  fsyncdir?(ctx: RequestContext, node: Node, handle: H, datasync: boolean): Result<void>;

  statfs?(ctx: RequestContext, node: Node): Result<StatFs>;
  /** access(2) check; not sent by the kernel with `default_permissions`. */
  access?(ctx: RequestContext, node: Node, mask: number): Result<void>;

  /** `flags`: XATTR_CREATE (1) / XATTR_REPLACE (2). */
  setxattr?(
    ctx: RequestContext,
    node: Node,
    name: string,
    value: Uint8Array,
    flags: number,
  ): Result<void>;
  /** The whole value; the layer implements the size-probe protocol and ERANGE. Missing: ENODATA. */
  getxattr?(ctx: RequestContext, node: Node, name: string): Result<Uint8Array>;
  /** All attribute names; the layer encodes them and implements the size-probe protocol. */
  listxattr?(ctx: RequestContext, node: Node): Result<string[]>;
  removexattr?(ctx: RequestContext, node: Node, name: string): Result<void>;
}

/** Injected logger (the CLI's); `debug` receives the rx/tx trace when tracing is on. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}
