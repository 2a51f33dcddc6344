/**
 * The satellite's methods, declared once: name → params schema, result schema.
 *
 * Conventions:
 * - Paths are relative to the satellite's root: `""` is the root itself, `"a/b"` a descendant.
 *   No leading `/`, no `.`/`..`/empty components. A path (or name) is a UTF-8 string, or raw
 *   bytes (`Uint8Array`) when it is not valid UTF-8; both forms are accepted everywhere.
 * - Offsets, sizes and inode numbers are bigint (exact beyond 2^53).
 * - Open flags use the protocol's numbering ({@link OpenFlags}, x86_64's values); convert
 *   with {@link openFlagsToWire} / {@link openFlagsFromWire} on other architectures.
 * - Methods that create an inode take an optional `owner`; a satellite running as root
 *   chowns the new inode to it (pass the FUSE caller's uid/gid). They return its Stat.
 * - Modes are applied exactly as given: the satellite runs with umask 0.
 *
 * @module
 */

import {
  AARCH64_OPEN_FLAGS,
  O_ACCMODE,
  O_APPEND,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECT,
  O_DIRECTORY,
  O_DSYNC,
  O_EXCL,
  O_LARGEFILE,
  O_NOATIME,
  O_NOCTTY,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_PATH,
  O_RDWR,
  O_SYNC,
  O_TRUNC,
  O_WRONLY,
} from "../linux/mod.ts";
import { entryList, type Stat, statRecord } from "./records.ts";
import {
  arr,
  bool,
  bytes,
  type Infer,
  type InferWire,
  int,
  name,
  nameOf,
  nil,
  obj,
  opt,
  type Schema,
  str,
  u32,
  u64,
} from "./schema.ts";

/** Protocol version spoken by this module; the handshake rejects any other. */
export const PROTOCOL_VERSION = 3;
/** Largest payload of one read or write. */
export const MAX_IO_BYTES = 1 << 20;
/** Most bytes an `open` reads ahead. */
export const MAX_OPEN_READ_AHEAD = 128 << 10;
/** Largest frame body (msgpack message) either side accepts; headroom for 1 MiB writes. */
export const MAX_FRAME_BYTES = MAX_IO_BYTES + 64 * 1024;
/** Most directory entries one readdir answers. */
export const MAX_READDIR_ENTRIES = 4096;
/** Most node handles one `forget` closes. */
export const MAX_FORGET = 4096;
/** Most changes in one event frame, and directories in one unwatch. */
export const MAX_CHANGES = 4096;

/**
 * Longest protocol path, in bytes of UTF-8 (the satellite answers ENAMETOOLONG past it; every
 * component stays within NAME_MAX). Far beyond PATH_MAX: a process whose working directory is
 * deep reaches paths longer than PATH_MAX, and the satellite resolves them in pieces. Two paths
 * of this many UTF-16 units (at most 3 bytes each in UTF-8) fit one frame (rename, link).
 */
export const MAX_PATH_BYTES = 128 * 1024;

/** A path relative to the root, or a name: UTF-8 string, or bytes when not valid UTF-8. */
export type PathArg = string | Uint8Array;

const path = nameOf(MAX_PATH_BYTES);
const handle = u32;
/** A node handle (see `lookup`): a safe integer, unique to the satellite that issued it. */
const nodeId = int;
/**
 * The node handle a `path` is relative to; absent: the root. A handle the satellite does not
 * hold (forgotten, or issued by an earlier satellite) fails ESTALE.
 */
const at = opt(nodeId);

/** Owner for newly created inodes (applied when the satellite is root). */
const owner = opt(obj({ uid: u32, gid: u32 }));

/** `lstat` result: struct statx, without following a final symlink; travels as a record. */
export const statSchema: Schema<Stat> = statRecord;
export type { Stat } from "./records.ts";

/** Most entries (all directories together) one `walk` answers. */
export const MAX_WALK_ENTRIES = 4096;
/** Most paths one `walk` asks for. */
export const MAX_WALK_PATHS = 256;
/**
 * The `maxMs` a client near the satellite asks a walk for: a walk under way delays the requests
 * read meanwhile by up to this (queries then overtake the walks still waiting, see `Order`). A
 * client far away asks for none (each answer cut short would cost it a round trip).
 */
export const WALK_SLICE_MS = 10;
/** Longest `maxMs` a walk takes. */
export const MAX_WALK_MS = 1000;

/** One directory a `walk` listed whole. */
export const walkDirSchema = obj({
  path: name,
  /** The directory's own attributes (xattr probe included), taken as it was listed. */
  self: opt(statSchema),
  entries: entryList(MAX_WALK_ENTRIES, true),
});
/** A directory listed by a walk. */
export type WalkDir = Infer<typeof walkDirSchema>;

/** Most names one `readFiles` asks for. */
export const MAX_READ_FILES = 256;
/** Most bytes of contents one `readFiles` answers. */
export const MAX_READ_FILES_BYTES = 512 * 1024;

/** A small file read whole by `readFiles`. */
export const wholeFileSchema = obj({
  /** The opened file's attributes, taken before it was read. */
  stat: statSchema,
  data: bytes(MAX_READ_FILES_BYTES),
});
/** A file's whole contents and whose they are. */
export type WholeFile = Infer<typeof wholeFileSchema>;

/** statvfs of the filesystem holding a path. */
export const statFsSchema = obj({
  bsize: u32,
  frsize: u32,
  blocks: u64,
  bfree: u64,
  bavail: u64,
  files: u64,
  ffree: u64,
  favail: u64,
  namemax: u32,
  flags: u32,
});
/** Filesystem statistics. */
export type StatFs = Infer<typeof statFsSchema>;

/** A timestamp for utimens; `nsec` may be UTIME_NOW or UTIME_OMIT. */
const time = opt(obj({ sec: int, nsec: u32 }));
// The Linux flag values methods take (utimensat nsec, renameat2, lseek whence, setxattr).
export {
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  SEEK_CUR,
  SEEK_DATA,
  SEEK_END,
  SEEK_HOLE,
  SEEK_SET,
  UTIME_NOW,
  UTIME_OMIT,
  XATTR_CREATE,
  XATTR_REPLACE,
} from "../linux/mod.ts";

/**
 * How the satellite orders a method's calls. Calls are served in the order sent, but for one
 * exception: a call made ahead of need (`ahead`: a walk) waits while the queries sent after it
 * are served, so that a `stat` or an `open` the kernel waits for is not held up by listings
 * nobody asked for yet. A query (`query`, or `query(params)` true) changes nothing a walk reads
 * (but access times, which reads on the I/O workers never kept in order), so it commutes with a
 * walk: every answer is one the calls in order could have given. Anything else sent after a
 * waiting walk (a change) is served after it, so what is sent after a change still sees it;
 * but a change of names (`changesNames`: create, mkdir, unlink, rename…) answers the walks still
 * waiting at once with nothing walked (`walked` 0, no directories) before it is served. The
 * client keeps no walk answered after it sent such a change (what a walk lists may no longer
 * hold), so serving them first would only hold the change up.
 */
interface Order<P> {
  readonly ahead?: true;
  readonly query?: true | ((params: P) => boolean);
  readonly changesNames?: true;
}

/** One method: its params and result schemas, and how its calls are ordered ({@link Order}). */
interface Method<P, R, W> {
  readonly params: Schema<P>;
  readonly result: Schema<R, W>;
  readonly ahead: boolean;
  readonly query: boolean | ((params: P) => boolean);
  readonly changesNames: boolean;
}

function method<P, R, W>(
  params: Schema<P>,
  result: Schema<R, W>,
  order: Order<P> = {},
): Method<P, R, W> {
  return {
    params,
    result,
    ahead: order.ahead === true,
    query: order.query ?? false,
    changesNames: order.changesNames === true,
  };
}

const QUERY = { query: true } as const;
const CHANGES_NAMES = { changesNames: true } as const;

/**
 * Attributes of the parent directory right after a change in it (`dir` of create, unlink,
 * rmdir, mkdir, symlink, mknod and link results, the directories of a rename): the kernel asks
 * for them next, the client answers without a round trip.
 */
const changedDir = obj({ dir: statSchema });

/**
 * A node just made (mkdir, symlink, mknod, link) and, as `changedDir`, its directory's
 * attributes right after.
 */
const madeSchema = obj({ stat: statSchema, dir: opt(statSchema) });

/**
 * The method table. Every call site and every satellite handler is typed from it.
 * Failures are errno names (see errno.ts), never part of the result types.
 */
export const METHODS = {
  /** Attributes of `path` (final symlink not followed). */
  lstat: method(obj({ at, path }), statSchema, QUERY),
  /**
   * `lstat`, and for a directory a node handle (`node`) while the satellite's descriptor budget
   * lasts: an O_PATH descriptor it holds until `forget`, that later paths may be relative to
   * (`at`). A directory keeps its handle while it is held: answered again, the same handle
   * counts once more, and each answer is given back by one id in `forget`.
   */
  lookup: method(obj({ at, path }), obj({ stat: statSchema, node: opt(nodeId) }), QUERY),
  /** Gives back node handle answers (one per id); unknown ids are passed over. */
  forget: method(obj({ nodes: arr(nodeId, MAX_FORGET) }), nil),
  /** Attributes of an open file or directory (also once unlinked). */
  fstat: method(obj({ handle }), statSchema, QUERY),
  /**
   * Opens a directory for readdir; with `readAhead`, also up to that many first entries (as
   * `readdir` from offset 0 with `plus`) in the same round trip; with `node`, also a node handle
   * of the directory (as `lookup` gives).
   */
  opendir: method(
    obj({ at, path, readAhead: opt(u32), node: opt(bool) }),
    obj({
      handle,
      entries: opt(entryList(MAX_READDIR_ENTRIES)),
      eof: opt(bool),
      node: opt(nodeId),
    }),
    QUERY,
  ),
  /**
   * Lists the subtrees of `paths`, in order, depth first (children in readdir order), each
   * directory whole (entries as readdir `plus`, symlink targets included) or not at all, never
   * into another filesystem than its path's, until about `maxEntries` entries or `maxBytes`
   * bytes are answered, and, with `maxMs` (at most MAX_WALK_MS), no directory after the first
   * is begun once the answer has taken that long. `walked`: how many of `paths`, from the first,
   * were walked to the end (a path that cannot be opened, or a directory larger than the whole
   * budget, is passed over).
   */
  walk: method(
    obj({ paths: arr(path, MAX_WALK_PATHS), maxEntries: u32, maxBytes: u32, maxMs: opt(u32) }),
    obj({ dirs: arr(walkDirSchema, MAX_WALK_ENTRIES), walked: u32 }),
    { ahead: true },
  ),
  /**
   * Reads whole, in order, the regular files among `names` (entries of directory `dir`) of at
   * most `maxFileBytes` bytes, until `maxBytes` (at most MAX_READ_FILES_BYTES) of contents are
   * answered: for each name its contents and Stat, or nothing (not a regular file, empty, larger,
   * unreadable, or past the budget). Best effort, for opens to come: no failure but `dir`'s.
   */
  readFiles: method(
    obj({ at, dir: path, names: arr(name, MAX_READ_FILES), maxFileBytes: u32, maxBytes: u32 }),
    arr(opt(wholeFileSchema), MAX_READ_FILES),
    QUERY,
  ),
  /** Entries after cookie `offset` (0: from the start); `plus` adds each entry's Stat. */
  readdir: method(
    obj({ handle, offset: u64, plus: bool, maxEntries: opt(u32) }),
    obj({ entries: entryList(MAX_READDIR_ENTRIES), eof: bool }),
    QUERY,
  ),
  /**
   * Opens an existing file (never creates; O_NOFOLLOW is implied). With `readAhead`, also the
   * file's first bytes (at most MAX_OPEN_READ_AHEAD; fewer means end of file) in the same trip.
   */
  open: method(
    obj({ at, path, flags: u32, readAhead: opt(u32), stat: opt(bool) }),
    obj({
      handle,
      data: opt(bytes(MAX_OPEN_READ_AHEAD)),
      stat: opt(statSchema),
      quietClose: opt(bool),
    }),
    // Read-only opens only: a truncating open changes the file.
    { query: (p) => (p.flags & (O_ACCMODE | O_TRUNC)) === 0 },
  ),
  /** Creates (or, without O_EXCL, opens) a regular file and opens it. */
  create: method(
    obj({ at, path, flags: u32, mode: u32, owner }),
    obj({ handle, stat: statSchema, dir: opt(statSchema), quietClose: opt(bool) }),
    CHANGES_NAMES,
  ),
  /** Up to `size` bytes at `offset`; shorter at end of file. */
  read: method(obj({ handle, offset: u64, size: u32 }), bytes(MAX_IO_BYTES), QUERY),
  /** Writes `data` at `offset`; returns bytes written. */
  write: method(obj({ handle, offset: u64, data: bytes(MAX_IO_BYTES) }), u32),
  /** Closes a file or directory handle. */
  release: method(obj({ handle }), nil),
  /**
   * close()-time flush of a file handle (reports deferred write errors); answers the file's
   * attributes after it (what a stat right after close asks), when fstat gives them. A handle
   * opened writable on a filesystem whose close reports nothing more than its writes (see
   * QUIET_CLOSE_FS_TYPES) is answered `quietClose` by open and create: its flush need not be
   * asked.
   */
  flush: method(obj({ handle }), opt(statSchema)),
  /** fsync, or fdatasync when `datasync`. Works on directory handles too. */
  fsync: method(obj({ handle, datasync: bool }), nil),
  /** Truncates `path` (final symlink not followed). */
  truncate: method(obj({ at, path, size: u64 }), nil),
  /** Truncates an open file. */
  ftruncate: method(obj({ handle, size: u64 }), nil),
  /**
   * Applies the given attribute changes in order chown, chmod, truncate, utimens (final
   * symlink not followed; `handle` used for truncate when given) and returns the new Stat.
   */
  setattr: method(
    obj({
      at,
      path,
      handle: opt(handle),
      mode: opt(u32),
      uid: opt(u32),
      gid: opt(u32),
      size: opt(u64),
      atime: time,
      mtime: time,
    }),
    statSchema,
  ),
  /** Makes a directory; answers, as `lookup`, its node handle while the budget lasts. */
  mkdir: method(
    obj({ at, path, mode: u32, owner }),
    obj({ stat: statSchema, dir: opt(statSchema), node: opt(nodeId) }),
    CHANGES_NAMES,
  ),
  rmdir: method(obj({ at, path }), opt(changedDir), CHANGES_NAMES),
  unlink: method(obj({ at, path }), opt(changedDir), CHANGES_NAMES),
  /**
   * renameat2 with RENAME_NOREPLACE / RENAME_EXCHANGE flags; answers the attributes of the
   * directories of `from` and `to` after it.
   */
  rename: method(
    obj({ fromAt: at, from: path, toAt: at, to: path, flags: u32 }),
    obj({ fromDir: opt(statSchema), toDir: opt(statSchema) }),
    CHANGES_NAMES,
  ),
  /** Hard link `to` → existing `from`; answers the Stat of the inode and of `to`'s directory. */
  link: method(obj({ fromAt: at, from: path, toAt: at, to: path }), madeSchema, CHANGES_NAMES),
  /** Creates symlink `path` with content `target`. */
  symlink: method(obj({ at, path, target: name, owner }), madeSchema, CHANGES_NAMES),
  readlink: method(obj({ at, path }), name, QUERY),
  /** chmod (final symlink not followed: EOPNOTSUPP on a symlink). */
  chmod: method(obj({ at, path, mode: u32 }), nil),
  /** fchownat(AT_SYMLINK_NOFOLLOW); an absent id is left unchanged. */
  chown: method(obj({ at, path, uid: opt(u32), gid: opt(u32) }), nil),
  /** utimensat(AT_SYMLINK_NOFOLLOW); an absent time is left unchanged. */
  utimens: method(obj({ at, path, atime: time, mtime: time }), nil),
  statfs: method(obj({ at, path }), statFsSchema, QUERY),
  /** Creates a fifo, socket or device node (`mode` includes the S_IF* type). */
  mknod: method(
    obj({ at, path, mode: u32, rdevMajor: u32, rdevMinor: u32, owner }),
    madeSchema,
    CHANGES_NAMES,
  ),
  /** The value of an extended attribute (final symlink not followed). */
  getxattr: method(obj({ at, path, name: str(255) }), bytes(65536), QUERY),
  setxattr: method(obj({ at, path, name: str(255), value: bytes(65536), flags: u32 }), nil),
  listxattr: method(obj({ at, path }), arr(name, 65536), QUERY),
  removexattr: method(obj({ at, path, name: str(255) }), nil),
  fallocate: method(obj({ handle, mode: u32, offset: u64, length: u64 }), nil),
  /** lseek; for SEEK_DATA / SEEK_HOLE. Returns the new offset. */
  lseek: method(obj({ handle, offset: u64, whence: u32 }), u64),
  /** copy_file_range between two open files; returns bytes copied. */
  copyFileRange: method(
    obj({
      handleIn: handle,
      offsetIn: u64,
      handleOut: handle,
      offsetOut: u64,
      length: u64,
      flags: u32,
    }),
    u64,
  ),
  /**
   * Starts the change feed (`eventSchema`): from now on the directories named by requests
   * (the root, and those stat-ed or listed) are watched, up to `maxWatches`. Answers the root's
   * key (`Change.dir`), absent when the root cannot be watched.
   */
  watch: method(obj({ maxWatches: u32 }), obj({ root: opt(str(64)) })),
  /** Stops watching directories (by `Change.dir` key) whose names the client no longer caches. */
  unwatch: method(obj({ dirs: arr(str(64), MAX_CHANGES) }), nil),
} as const;

/** What a change says (bits of `Change.what`). */
export const ChangeKind = {
  /** `name` in `dir` was created, deleted or renamed (to or from). */
  NAME: 1,
  /** Attributes of `name` in `dir` changed. */
  ATTR: 2,
  /** Contents (and so size and times) of `name` in `dir` changed. */
  DATA: 4,
  /** `dir` itself changed (attributes), was deleted or moved. */
  SELF: 8,
  /** `dir` is watched from now on: changes in it will be told (`name` "": it is the root). */
  WATCHED: 16,
  /** `dir` is no longer watched (deleted, unmounted, or unwatched). */
  UNWATCHED: 32,
  /** Changes were lost (the kernel's queue overflowed): nothing cached can be trusted. */
  OVERFLOW: 64,
} as const;

/** One change; `dir` is the directory's key `"devMajor:devMinor:ino"` ("" for OVERFLOW). */
export const changeSchema = obj({ dir: str(64), name: opt(name), what: u32 });
/** A change told by the satellite. */
export type Change = Infer<typeof changeSchema>;
/** The body of an event frame (`[5, event]`): changes, oldest first. */
export const eventSchema = obj({ changes: arr(changeSchema, MAX_CHANGES) });
/** An event frame's body. */
export type ChangeEvent = Infer<typeof eventSchema>;

/** Name of a method of the table. */
export type MethodName = keyof typeof METHODS;
/** Params of method `M`. */
export type ParamsOf<M extends MethodName> = Infer<(typeof METHODS)[M]["params"]>;
/** Result of method `M`, as the client receives it. */
export type ResultOf<M extends MethodName> = Infer<(typeof METHODS)[M]["result"]>;
/** Result of method `M`, as the satellite sends it (listings as records). */
export type WireResultOf<M extends MethodName> = InferWire<(typeof METHODS)[M]["result"]>;

/** True when calls of `method` wait while later queries are served ({@link Order}). */
export function isAhead(method: MethodName): boolean {
  return METHODS[method].ahead;
}

/** True when a call of `method` answers the walks waiting before it empty ({@link Order}). */
export function changesNames(method: MethodName): boolean {
  return METHODS[method].changesNames;
}

/** True when a call of `method` with (parsed) `params` is a query ({@link Order}). */
export function isQuery(method: MethodName, params: unknown): boolean {
  const query = METHODS[method].query as boolean | ((params: unknown) => boolean);
  return typeof query === "function" ? query(params) : query;
}

/** True when `name` is a method of the table. */
export function isMethodName(name: unknown): name is MethodName {
  return typeof name === "string" && Object.hasOwn(METHODS, name);
}

/** The first frame the satellite sends: who it is. */
export const helloSchema = obj({
  protocol: u32,
  buildId: str(200),
  pid: u32,
  uid: u32,
  gid: u32,
  arch: str(64),
  /** The root directory served (as given on the command line). */
  root: str(4096),
  maxFrameBytes: u32,
  /**
   * Also listening on `DIRECT_SOCKET_NAME` in its working directory (`--listen`): a client on the
   * same host may go on there instead (see `DIRECT_TOKEN_ENV`), else it sends its requests here.
   */
  direct: opt(bool),
});

/**
 * The direct channel (`--listen`): the satellite's socket, in its own working directory (its
 * private upload directory, mode 0700), which a client on the engine's host reaches as
 * `/proc/<pid>/cwd/<name>` without resolving any of the container's paths. A connection first
 * sends the secret the satellite got in its environment (`DIRECT_TOKEN_ENV`, hex); the satellite
 * then answers with its hello and serves the connection, stdin staying its lifeline.
 */
export const DIRECT_SOCKET_NAME = "dockerfuse.sock";
/** The environment variable holding the direct channel's secret. */
export const DIRECT_TOKEN_ENV = "DOCKERFUSE_DIRECT_TOKEN";
/** Length of the secret (hex digits). */
export const DIRECT_TOKEN_CHARS = 32;
/** The satellite's handshake. */
export type Hello = Infer<typeof helloSchema>;

/**
 * Open flags in the protocol's numbering (= x86_64's). Only the access mode and these bits
 * cross the wire; others are dropped.
 */
export const OpenFlags = {
  O_WRONLY,
  O_RDWR,
  O_CREAT,
  O_EXCL,
  O_NOCTTY,
  O_TRUNC,
  O_APPEND,
  O_NONBLOCK,
  O_DSYNC,
  O_DIRECT,
  O_LARGEFILE,
  O_DIRECTORY,
  O_NOFOLLOW,
  O_NOATIME,
  O_CLOEXEC,
  O_SYNC,
  O_PATH,
} as const;

/** Flags whose values differ on aarch64 (asm-generic numbering), by name. */
const AARCH64_DIFFERENT: Partial<Record<keyof typeof OpenFlags, number>> = AARCH64_OPEN_FLAGS;

function nativeTable(arch: string): [number, number][] {
  return (Object.keys(OpenFlags) as (keyof typeof OpenFlags)[]).map((k) => [
    OpenFlags[k],
    arch === "aarch64" ? AARCH64_DIFFERENT[k] ?? OpenFlags[k] : OpenFlags[k],
  ]);
}

function translate(flags: number, table: [number, number][], from: 0 | 1): number {
  let out = flags & 3;
  for (const pair of table) {
    const bit = pair[from];
    if (bit > 3 && (flags & bit) === bit) out |= pair[1 - from];
  }
  return out >>> 0;
}

/** Converts open flags of `arch` ("x86_64", "aarch64") to the protocol's numbering. */
export function openFlagsToWire(nativeFlags: number, arch: string): number {
  return translate(nativeFlags, nativeTable(arch), 1);
}

/** Converts protocol open flags to `arch`'s numbering. */
export function openFlagsFromWire(wireFlags: number, arch: string): number {
  return translate(wireFlags, nativeTable(arch), 0);
}

/** Linux's 32-bit device encoding (as in FUSE's attr.rdev) from major/minor. */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Major/minor from Linux's 32-bit device encoding. */
export function decodeDev(dev: number): { major: number; minor: number } {
  return { major: (dev >>> 8) & 0xfff, minor: ((dev & 0xff) | ((dev >>> 12) & 0xfff00)) >>> 0 };
}
