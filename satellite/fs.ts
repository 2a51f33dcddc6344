/**
 * The satellite's filesystem handlers: every method of the protocol's table, against a root
 * directory, through libc.
 *
 * Path safety: a protocol path never has `..`, `.`, empty or absolute components (EINVAL).
 * Its parent directory is opened beneath the root with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) (in runs of at most PATH_MAX bytes, see paths.ts; or, where openat2 is
 * unavailable, one O_NOFOLLOW openat per component), so a symlink in an intermediate component
 * can never lead out of the root; the
 * operation then works on (parent fd, last name) without following a final symlink.
 *
 * @module
 */

import {
  BytesReply,
  encodeDev,
  type EntryList,
  errnoName,
  type Handlers,
  inodeKey,
  Later,
  MAX_IO_BYTES,
  MAX_OPEN_READ_AHEAD,
  MAX_READ_FILES_BYTES,
  MAX_READDIR_ENTRIES,
  OpenFlags,
  openFlagsFromWire,
  type ParamsOf,
  RECORD_BYTES,
  type ResultOf,
  RpcFailure,
  type Stat,
  type StatFs,
  statOfStatx,
  statxBlocks,
  statxGid,
  statxIno,
  statxMode,
  statxNlink,
  statxSize,
  statxUid,
  UTIME_OMIT,
} from "../src/protocol/mod.ts";
import {
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_NO_AUTOMOUNT,
  AT_REMOVEDIR,
  AT_SYMLINK_NOFOLLOW,
  DIRENT64,
  DIRENT64_MIN_RECLEN,
  ERRNO,
  LOCAL_FS_TYPES,
  MODE_PERM_MASK,
  PATH_MAX,
  POSIX_FADV_WILLNEED,
  QUIET_CLOSE_FS_TYPES,
  RESOLVE_BENEATH,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_ISGID,
  S_ISUID,
  SEEK_SET,
  STATX_BASIC_STATS,
} from "../src/linux/mod.ts";
import { DATA_OFFSET, Op } from "./io_jobs.ts";
import { big, cString, type Libc, num } from "./libc.ts";
import {
  isDotName,
  joinBytes,
  pathRuns,
  splitPath,
  tooLong,
  type Where,
  withNul,
} from "./paths.ts";
import { NodeHandles } from "./nodes.ts";
import type { IoPool } from "./workers.ts";
import { walk, type WalkAccess } from "./walk.ts";
import { decodeName, type Listing, newListing, wireListing } from "./listing.ts";

const {
  EEXIST,
  EINTR,
  EINVAL,
  ELOOP,
  ENAMETOOLONG,
  ENODATA,
  ENOENT,
  ENOSYS,
  EOPNOTSUPP,
  EOVERFLOW,
  EPERM,
  ESTALE,
  ERANGE,
} = ERRNO;
const I64_MAX = (1n << 63n) - 1n;

/** Room left for one getdents64 call of `#listAll` (an entry takes at most about 280 bytes). */
const DENT_CHUNK = 32 * 1024;
/** Largest `#listAll` buffer kept between listings. */
const LIST_BYTES_KEPT = 256 * 1024;

/** `readFiles` buffers kept between answers (each MAX_READ_FILES_BYTES). */
const FILES_BUFFERS_KEPT = 2;

/** Most bytes of entries one readdir answer carries (names + attributes, estimated). */
const READDIR_BUDGET = 512 * 1024;

/** What `open` answers. */
type Opened = ResultOf<"open">;
/** What `readFiles` answers. */
type ReadFiles = ResultOf<"readFiles">;

interface FileHandle {
  readonly fd: number;
  dir?: DirState;
}

interface DirState {
  /** Cookie of the next entry getdents64 will return. */
  position: bigint;
  /** Entries read but not yet returned, from `position`. */
  buffered: RawEntry[];
}

interface RawEntry {
  name: Uint8Array;
  ino: bigint;
  type: number;
  offset: bigint;
}

/** Where an xattr call acts: a path not to follow at its end, or a descriptor of the target. */
type XattrTarget = { path: Uint8Array; fd?: undefined } | { fd: number; path?: undefined };

/** A resolved path: parent fd (owned unless it is the root fd) and last component. */
interface Resolved {
  readonly dirfd: number;
  readonly name: Uint8Array;
  readonly owned: boolean;
}

const DOT = cString(".")!;
const EMPTY = cString("")!;

function failure(errno: number, what?: string): RpcFailure {
  return new RpcFailure(errnoName(errno), what);
}

/** Descriptor numbers whose xattr probe prefix is kept (a walk uses a few at once). */
const XATTR_PREFIXES = 1024;
const textEncoder = new TextEncoder();

/** Options of {@link SatelliteFs}. */
export interface SatelliteFsOptions {
  /** Path of /proc/self/fd, for chmod and the l*xattr calls (undefined: /proc is not mounted). */
  procFd?: string;
  /** Diagnostics sink (stderr). */
  log?: (message: string) => void;
  /** Resolve per component even where openat2 exists (tests the fallback). */
  walkPaths?: boolean;
  /** chmod through O_PATH descriptors even where fchmodat2 exists (tests the fallback). */
  noFchmodat2?: boolean;
  /** Probe xattrs through `procFd` even where listxattrat exists (tests the fallback). */
  noListxattrat?: boolean;
  /**
   * Runs reads, fsync, fallocate and copy_file_range off the main thread (satellite/workers.ts);
   * without it (or when it cannot), they run inline.
   */
  io?: Pick<IoPool, "submit" | "busy" | "whenIdle">;
  /** The node handles (`lookup`, `at`); without it, none is issued. */
  nodes?: NodeHandles;
  /**
   * Runs a task once the loop has nothing to answer (Loop.whenIdle): an unlinked file's last
   * reference is dropped there, so freeing its blocks (a synchronous discard on some disks)
   * does not delay the answer. Without it, unlink takes no reference of its own.
   */
  whenIdle?: (fn: () => void) => void;
}

/** Unlinked files whose last reference waits for an idle loop, at most (see `#unlinkFile`). */
const HELD_UNLINKED = 64;
/** Files with more blocks than this (1 MiB) are freed at once, not held (see `#unlinkFile`). */
const HELD_BLOCKS = 2048n;

/** The handlers, bound to a root directory fd. */
export class SatelliteFs {
  readonly #c: Libc;
  readonly #rootFd: number;
  readonly #handles = new Map<number, FileHandle>();
  readonly #nodes: NodeHandles;
  readonly #euid: number;
  readonly #options: SatelliteFsOptions;
  #walkHook: ((fd: number) => void) | undefined;
  /** "/proc/…/fd/N/" by descriptor number, for the xattr probe (see `#hasXattrsAt`). */
  readonly #xattrPrefixes = new Map<number, Uint8Array>();
  /** The xattr probe's path, built in place for each entry. */
  #xattrPath = new Uint8Array(512);
  #listxattrat = true;
  /** Buffers `readFiles` answers are assembled in, free again (see there). */
  readonly #filesBuffers: Uint8Array[] = [];
  /** O_PATH descriptors of unlinked files, closed when the loop is idle (`#unlinkFile`). */
  #held: number[] = [];
  readonly #statfsBuf = new Uint8Array(128);
  readonly #statBuf = new Uint8Array(256);
  readonly #statView = new DataView(this.#statBuf.buffer);
  readonly #dentBuf = new Uint8Array(64 * 1024);
  readonly #readBuf = new Uint8Array(BytesReply.bytesFor(MAX_IO_BYTES));
  readonly #aheadBuf = new Uint8Array(MAX_OPEN_READ_AHEAD);
  readonly #dentView = new DataView(this.#dentBuf.buffer);
  /** getdents64's output for a whole directory (`#listAll`), grown as needed and reused. */
  #listBytes = new Uint8Array(4 * DENT_CHUNK);
  #listView = new DataView(this.#listBytes.buffer);
  readonly #flags: Record<
    "O_PATH" | "O_DIRECTORY" | "O_NOFOLLOW" | "O_CLOEXEC" | "O_NOCTTY" | "O_RDONLY" | "O_WRONLY",
    number
  >;
  readonly #creatExcl: number;
  readonly #nonblock: number;
  #nextHandle = 1;
  #openat2 = true;
  #fchmodat2 = true;
  readonly #egid: number;
  /** Whether a failed chown of a new inode was logged (once is enough). */
  #chownLogged = false;

  constructor(libc: Libc, rootFd: number, options: SatelliteFsOptions) {
    this.#c = libc;
    this.#rootFd = rootFd;
    this.#options = options;
    this.#nodes = options.nodes ?? new NodeHandles(0, (fd) => libc.fn.close(fd));
    this.#euid = libc.fn.geteuid();
    this.#egid = libc.fn.getegid();
    const f = (bit: number) => openFlagsFromWire(bit, libc.arch);
    this.#flags = {
      O_PATH: f(OpenFlags.O_PATH),
      O_DIRECTORY: f(OpenFlags.O_DIRECTORY),
      O_NOFOLLOW: f(OpenFlags.O_NOFOLLOW),
      O_CLOEXEC: f(OpenFlags.O_CLOEXEC),
      O_NOCTTY: f(OpenFlags.O_NOCTTY),
      O_RDONLY: 0,
      O_WRONLY: 1,
    };
    this.#creatExcl = f(OpenFlags.O_CREAT | OpenFlags.O_EXCL);
    this.#nonblock = f(OpenFlags.O_NONBLOCK);
    this.#openat2 = !options.walkPaths;
    this.#fchmodat2 = !options.noFchmodat2;
    this.#listxattrat = !options.noListxattrat;
  }

  /** What `walk` (walk.ts) uses: directories opened without following, listed whole. */
  #walkAccess(): WalkAccess {
    return {
      libc: this.#c,
      openPath: (path) => {
        const f = this.#flags;
        const fd = this.#openAt(
          { path },
          f.O_RDONLY | f.O_DIRECTORY | f.O_NOFOLLOW | f.O_CLOEXEC,
        );
        return fd instanceof RpcFailure ? -1 : fd;
      },
      openChild: (dirfd, name) => {
        const f = this.#flags;
        const flags = f.O_RDONLY | f.O_DIRECTORY | f.O_NOFOLLOW | f.O_CLOEXEC;
        return this.#openRetry(dirfd, name, flags, 0);
      },
      statFd: (fd) => {
        const st = this.#statFd(fd, true);
        return st instanceof RpcFailure ? undefined : st;
      },
      list: (fd, limit) => this.#listAll(fd, limit),
      beforeList: (fd) => this.#walkHook?.(fd),
    };
  }

  /**
   * The directory at the absolute `path` listed as a walk lists (getdents, each entry's statx and
   * xattr probe, records), or undefined when it cannot be: the warm-up's (warm_up.ts) listing.
   */
  listAt(path: string): EntryList | undefined {
    const f = this.#flags;
    const flags = f.O_RDONLY | f.O_DIRECTORY | f.O_CLOEXEC;
    const fd = this.#c.fn.openat(AT_FDCWD, cString(path)!, flags, 0);
    if (fd < 0) return undefined;
    try {
      const listed = this.#listAll(fd, MAX_READDIR_ENTRIES);
      return typeof listed === "number" ? undefined : wireListing(listed);
    } finally {
      this.#c.fn.close(fd);
    }
  }

  /** Sets what a walk calls with each directory it opens, before reading it. */
  onWalkDir(hook: (fd: number) => void): void {
    this.#walkHook = hook;
  }

  /** Number of open handles. */
  get openHandles(): number {
    return this.#handles.size;
  }

  /** What is known of node handle `id`'s directory (see NodeHandles.about). */
  node(id: number): { identity?: string; name?: Uint8Array } | undefined {
    return this.#nodes.about(id);
  }

  /** Closes every handle, node handles too (at exit). */
  closeAll(): void {
    for (const h of this.#handles.values()) this.#c.fn.close(h.fd);
    this.#handles.clear();
    this.#nodes.closeAll();
    this.#dropHeld();
  }

  /** The handler table for the dispatcher. */
  handlers(): Handlers {
    const handlers: Handlers = {
      lstat: (p) => this.#lstat(p),
      lookup: (p) => this.#lookup(p),
      forget: (p) => {
        this.#nodes.forget(p.nodes);
        return null;
      },
      fstat: (p) => {
        const h = this.#handles.get(p.handle);
        return h ? this.#statFd(h.fd) : new RpcFailure("EBADF", `no handle ${p.handle}`);
      },
      opendir: (p) => this.#opendir(p),
      readdir: (p) => this.#readdir(p),
      walk: (p) => walk(this.#walkAccess(), p),
      readFiles: (p) => this.#readFiles(p),
      open: (p) => this.#open(p),
      create: (p) => this.#create(p),
      read: (p) => this.#offloadRead(p) ?? this.#read(p),
      write: (p) => this.#write(p),
      release: (p) => {
        const io = this.#options.io;
        if (!io?.busy(p.handle)) return this.#release(p.handle);
        // A job still uses its descriptor: closed once the last one is done.
        const later = new Later<null>();
        io.whenIdle(p.handle, () => later.settle(this.#release(p.handle)));
        return later;
      },
      flush: (p) => {
        const done = this.#fdOp(p.handle, (fd) => {
          const dup = this.#c.fn.dup(fd);
          return dup < 0 ? dup : this.#c.fn.close(dup);
        });
        if (done !== null) return done;
        const st = this.#statFd(this.#handles.get(p.handle)!.fd);
        return st instanceof RpcFailure ? undefined : st;
      },
      fsync: (p) =>
        this.#offloadFdOp(p.handle, Op.FSYNC, [p.datasync ? 1n : 0n]) ??
          this.#fdOp(
            p.handle,
            (fd) => p.datasync ? this.#c.fn.fdatasync(fd) : this.#c.fn.fsync(fd),
          ),
      truncate: (p) => this.#truncatePath(p, p.size),
      ftruncate: (p) => this.#fdOp(p.handle, (fd) => this.#c.fn.ftruncate64(fd, p.size)),
      setattr: (p) => this.#setattr(p),
      mkdir: (p) =>
        this.#createNode(
          p,
          p.owner,
          (dirfd, name) => this.#c.fn.mkdirat(dirfd, name, p.mode),
          true,
        ),
      rmdir: (p) => this.#atOpDir(p, (d, n) => this.#c.fn.unlinkat(d, n, AT_REMOVEDIR)),
      unlink: (p) => this.#atOpDir(p, (d, n) => this.#unlinkFile(d, n)),
      rename: (p) => this.#rename(p),
      link: (p) => this.#link(p),
      symlink: (p) => {
        const target = cString(p.target);
        if (!target) return new RpcFailure("EINVAL", "NUL in symlink target");
        return this.#createNode(
          p,
          p.owner,
          (dirfd, name) => this.#c.fn.symlinkat(target, dirfd, name),
        );
      },
      readlink: (p) => this.#readlink(p),
      chmod: (p) => this.#chmod(p, p.mode),
      chown: (p) =>
        this.#atOp(
          p,
          (d, n) =>
            this.#c.fn.fchownat(
              d,
              n,
              p.uid ?? 0xffffffff,
              p.gid ?? 0xffffffff,
              AT_SYMLINK_NOFOLLOW,
            ),
        ),
      utimens: (p) => this.#utimens(p, p.atime, p.mtime),
      statfs: (p) => this.#statfs(p),
      mknod: (p) =>
        this.#createNode(
          p,
          p.owner,
          (dirfd, name) =>
            num(
              this.#c.fn.sys_mknodat(
                this.#c.sys.mknodat,
                dirfd,
                name,
                p.mode,
                encodeDev(p.rdevMajor, p.rdevMinor),
              ),
            ),
        ),
      getxattr: (p) => this.#getxattr(p, p.name),
      setxattr: (p) => {
        const name = cString(p.name);
        if (!name) return new RpcFailure("EINVAL");
        return this.#xattr(
          p,
          (t) =>
            t.fd === undefined
              ? this.#c.fn.lsetxattr(t.path, name, p.value, BigInt(p.value.length), p.flags)
              : this.#c.fn.fsetxattr(t.fd, name, p.value, BigInt(p.value.length), p.flags),
          () => null,
          () => failure(EPERM, "no user xattrs on symlinks and special files"),
        );
      },
      listxattr: (p) => this.#listxattr(p),
      removexattr: (p) => {
        const name = cString(p.name);
        if (!name) return new RpcFailure("EINVAL");
        return this.#xattr(
          p,
          (t) =>
            t.fd === undefined
              ? this.#c.fn.lremovexattr(t.path, name)
              : this.#c.fn.fremovexattr(t.fd, name),
          () => null,
          () => failure(EPERM, "no user xattrs on symlinks and special files"),
        );
      },
      fallocate: (p) =>
        this.#offloadFdOp(p.handle, Op.FALLOCATE, [BigInt(p.mode), p.offset, p.length]) ??
          this.#fdOp(p.handle, (fd) => this.#c.fn.fallocate64(fd, p.mode, p.offset, p.length)),
      lseek: (p) => {
        const h = this.#handles.get(p.handle);
        if (!h) return new RpcFailure("EBADF");
        const r = big(this.#c.fn.lseek64(h.fd, p.offset, p.whence));
        return r < 0n ? failure(this.#c.errno()) : r;
      },
      copyFileRange: (p) => this.#offloadCopy(p) ?? this.#copyFileRange(p),
      // The change feed is watch.ts's (it replaces these when the satellite runs with it).
      watch: () => new RpcFailure("ENOSYS", "no change feed"),
      unwatch: () => null,
    };
    return guardOffsets(handlers);
  }

  /** An O_PATH descriptor of the directory at `w` beneath the root, or a positive errno. */
  openDirPath(w: Where): number {
    const r = this.#resolve(w);
    if (typeof r === "number") return r;
    try {
      const f = this.#flags;
      const fd = this.#c.fn.openat(
        r.dirfd,
        r.name,
        f.O_PATH | f.O_DIRECTORY | f.O_NOFOLLOW | f.O_CLOEXEC,
        0,
      );
      return fd < 0 ? this.#c.errno() : fd;
    } finally {
      this.#release_(r);
    }
  }

  /** Whether the directory at `w` beneath the root has no entries; undefined when unreadable. */
  emptyDir(w: Where): boolean | undefined {
    const f = this.#flags;
    const fd = this.#openAt(w, f.O_RDONLY | f.O_DIRECTORY | f.O_NOFOLLOW | f.O_CLOEXEC);
    if (fd instanceof RpcFailure) return undefined;
    try {
      const dir: DirState = { position: 0n, buffered: [] };
      for (;;) {
        const more = this.#fill(fd, dir);
        if (more instanceof RpcFailure) return undefined;
        if (!more || dir.buffered.length > 2) break;
      }
      return dir.buffered.every((raw) => isDotName(raw.name));
    } finally {
      this.#c.fn.close(fd);
    }
  }

  /** Attributes of an open descriptor (O_PATH ones too), or a failure. */
  statOf(fd: number): Stat | RpcFailure {
    return this.#statFd(fd);
  }

  // --- calls run by the I/O worker (satellite/workers.ts) ----------------------------------

  /** A read as a worker job; undefined when it runs inline (no worker, bad handle or size). */
  #offloadRead(p: ParamsOf<"read">): Later<Uint8Array> | undefined {
    const io = this.#options.io;
    const h = this.#handles.get(p.handle);
    if (!io || !h || p.size > MAX_IO_BYTES) return undefined;
    const later = new Later<Uint8Array>();
    const submitted = io.submit({
      op: Op.PREAD,
      fd: h.fd,
      args: [p.offset, BigInt(p.size)],
      handles: [p.handle],
      done: (r, data) => {
        if (r < 0n) return later.settle(failure(Number(-r)));
        // The reply is sent from the slot's data area as it is (valid until `done` returns).
        const reply = new BytesReply(p.size, data);
        reply.length = Number(r);
        later.settle(reply);
      },
    });
    return submitted ? later : undefined;
  }

  /** fsync or fallocate of a handle as a worker job (result 0 or -errno). */
  #offloadFdOp(handle: number, op: number, args: bigint[]): Later<null> | undefined {
    const io = this.#options.io;
    const h = this.#handles.get(handle);
    if (!io || !h) return undefined;
    const later = new Later<null>();
    const submitted = io.submit({
      op,
      fd: h.fd,
      args,
      handles: [handle],
      done: (r) => later.settle(r < 0n ? failure(Number(-r)) : null),
    });
    return submitted ? later : undefined;
  }

  #offloadCopy(p: ParamsOf<"copyFileRange">): Later<bigint> | undefined {
    const io = this.#options.io;
    const hin = this.#handles.get(p.handleIn);
    const hout = this.#handles.get(p.handleOut);
    if (!io || !hin || !hout) return undefined;
    const later = new Later<bigint>();
    const max = BigInt(MAX_IO_BYTES) * 1024n;
    const submitted = io.submit({
      op: Op.COPY_FILE_RANGE,
      fd: hin.fd,
      fd2: hout.fd,
      args: [p.offsetIn, p.offsetOut, p.length > max ? max : p.length, BigInt(p.flags)],
      handles: [p.handleIn, p.handleOut],
      done: (r) => later.settle(r < 0n ? failure(Number(-r)) : r),
    });
    return submitted ? later : undefined;
  }

  // --- path resolution -------------------------------------------------------------------

  /**
   * Opens the parent of `w.path` beneath its base: node handle `w.at`, or the root. Returns an
   * errno (positive) on failure: ESTALE for a node handle not held. A parent longer than one
   * openat2 takes (PATH_MAX) is opened one run of components at a time, each beneath the
   * O_PATH descriptor of the run before, with the same rules.
   */
  #resolve(w: Where): Resolved | number {
    const base = w.at === undefined ? this.#rootFd : this.#nodes.fd(w.at);
    if (base === undefined) return ESTALE;
    const path = w.path;
    const parts = splitPath(path);
    if (parts === undefined) return tooLong(path) ? ENAMETOOLONG : EINVAL;
    if (parts.length === 0) return { dirfd: base, name: DOT, owned: false };
    const name = withNul(parts[parts.length - 1]);
    if (parts.length === 1) return { dirfd: base, name, owned: false };
    const parents = parts.slice(0, -1);
    const flags = this.#flags.O_PATH | this.#flags.O_DIRECTORY | this.#flags.O_CLOEXEC;
    if (this.#openat2) {
      const how = new Uint8Array(
        new BigUint64Array([
          BigInt(flags),
          0n,
          BigInt(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS),
        ]).buffer,
      );
      let dirfd = base;
      let errno = 0;
      for (const run of pathRuns(parents)) {
        const fd = num(
          this.#c.fn.sys_openat2(this.#c.sys.openat2, dirfd, joinBytes(run), how, 24n),
        );
        errno = fd < 0 ? this.#c.errno() : 0;
        if (dirfd !== base) this.#c.fn.close(dirfd);
        if (fd < 0) break;
        dirfd = fd;
      }
      if (errno === 0) return { dirfd, name, owned: true };
      if (errno !== ENOSYS && errno !== EPERM) return errno;
      this.#openat2 = false; // kernel too old, or seccomp refuses it: walk instead
      this.#options.log?.(
        `openat2 unavailable (${errnoName(errno)}): resolving paths per component`,
      );
    }
    let dirfd = base;
    for (const part of parents) {
      const fd = this.#c.fn.openat(dirfd, withNul(part), flags | this.#flags.O_NOFOLLOW, 0);
      const errno = fd < 0 ? this.#c.errno() : 0;
      if (dirfd !== base) this.#c.fn.close(dirfd);
      if (fd < 0) return errno;
      dirfd = fd;
    }
    return { dirfd, name, owned: true };
  }

  #release_(r: Resolved): void {
    if (r.owned) this.#c.fn.close(r.dirfd);
  }

  /** Runs an *at call on the resolved path; result null or the call's errno. */
  #atOp(w: Where, op: (dirfd: number, name: Uint8Array) => number): null | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      return op(r.dirfd, r.name) < 0 ? failure(this.#c.errno()) : null;
    } finally {
      this.#release_(r);
    }
  }

  /** Like #atOp, answering the parent directory's attributes after the change. */
  #atOpDir(
    w: Where,
    op: (dirfd: number, name: Uint8Array) => number,
  ): { dir: Stat } | undefined | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      if (op(r.dirfd, r.name) < 0) return failure(this.#c.errno());
      const dir = this.#dirStat(r.dirfd);
      return dir === undefined ? undefined : { dir };
    } finally {
      this.#release_(r);
    }
  }

  /**
   * unlinkat of a file, holding an O_PATH reference across it when the loop can drop that later:
   * the inode's eviction (truncating, freeing and discarding its blocks: 0.1–0.5 ms measured on
   * ext4 with `discard` in a VM) then happens while the answer travels, not before it. Held only
   * when that is all the reference changes (see `#holdable`). Returns unlinkat's result with its
   * errno intact.
   */
  #unlinkFile(dirfd: number, name: Uint8Array): number {
    const whenIdle = this.#options.whenIdle;
    if (whenIdle === undefined || this.#held.length >= HELD_UNLINKED) {
      return this.#c.fn.unlinkat(dirfd, name, 0);
    }
    const f = this.#flags;
    let held = this.#c.fn.openat(dirfd, name, f.O_PATH | f.O_NOFOLLOW | f.O_CLOEXEC, 0);
    if (held >= 0 && !this.#holdable(held)) {
      this.#c.fn.close(held);
      held = -1;
    }
    const rc = this.#c.fn.unlinkat(dirfd, name, 0);
    if (held < 0) return rc;
    this.#held.push(held);
    if (this.#held.length === 1) whenIdle(() => this.#dropHeld());
    return rc;
  }

  /**
   * Whether holding `fd` across its unlink only moves the eviction: a regular file with one
   * link, at most {@link HELD_BLOCKS} blocks (a write right after may need a larger one's
   * space), on a local filesystem (on NFS a held file is renamed, not removed).
   */
  #holdable(fd: number): boolean {
    if (this.#statx(fd, EMPTY, AT_EMPTY_PATH) !== 0) return false;
    const v = this.#statView;
    if ((statxMode(v) & S_IFMT) !== S_IFREG || statxNlink(v) !== 1) return false;
    if (statxBlocks(v) > HELD_BLOCKS) return false;
    const type = this.#fsType(fd);
    return type !== undefined && LOCAL_FS_TYPES.has(type);
  }

  /** statfs(2) f_type of `fd`'s filesystem; undefined when fstatfs fails. */
  #fsType(fd: number): number | undefined {
    if (num(this.#c.fn.fstatfs(fd, this.#statfsBuf)) !== 0) return undefined;
    // f_type, the first field (a long: its low 32 bits hold every magic number)
    return new DataView(this.#statfsBuf.buffer).getUint32(0, true);
  }

  /** Closes the references `#unlinkFile` held. */
  #dropHeld(): void {
    const held = this.#held;
    this.#held = [];
    for (const fd of held) this.#c.fn.close(fd);
  }

  /** Attributes of the directory holding `path` (undefined when they cannot be had). */
  #parentStat(w: Where): Stat | undefined {
    const r = this.#resolve(w);
    if (typeof r === "number") return undefined;
    try {
      return this.#dirStat(r.dirfd);
    } finally {
      this.#release_(r);
    }
  }

  /** Attributes of the open directory `dirfd` (undefined when they cannot be had). */
  #dirStat(dirfd: number): Stat | undefined {
    return this.#statx(dirfd, EMPTY, AT_EMPTY_PATH) === 0 ? this.#readStat() : undefined;
  }

  #fdOp(handle: number, op: (fd: number) => number): null | RpcFailure {
    const h = this.#handles.get(handle);
    if (!h) return new RpcFailure("EBADF", `no handle ${handle}`);
    for (;;) {
      if (op(h.fd) >= 0) return null;
      const errno = this.#c.errno();
      if (errno !== EINTR) return failure(errno);
    }
  }

  // --- attributes --------------------------------------------------------------------------

  /** statx into the shared buffer; returns 0 or an errno. */
  #statx(dirfd: number, name: Uint8Array, flags: number): number {
    const r = num(
      this.#c.fn.sys_statx(
        this.#c.sys.statx,
        dirfd,
        name,
        flags | AT_NO_AUTOMOUNT,
        STATX_BASIC_STATS,
        this.#statBuf,
      ),
    );
    return r < 0 ? this.#c.errno() : 0;
  }

  /** The attributes in statx's buffer (after a successful #statx). */
  #readStat(): Stat {
    return statOfStatx(this.#statView, 0);
  }

  #statAt(dirfd: number, name: Uint8Array): Stat | RpcFailure {
    const errno = this.#statx(dirfd, name, AT_SYMLINK_NOFOLLOW);
    if (errno) return failure(errno);
    const stat = this.#readStat();
    stat.hasXattrs = this.#hasXattrsAt(dirfd, name);
    return stat;
  }

  #statFd(fd: number, withXattrs = false): Stat | RpcFailure {
    const errno = this.#statx(fd, EMPTY, AT_EMPTY_PATH);
    if (errno) return failure(errno);
    const stat = this.#readStat();
    if (withXattrs) {
      const n = num(this.#c.fn.flistxattr(fd, null, 0n));
      stat.hasXattrs = n >= 0 ? n > 0 : undefined;
    }
    return stat;
  }

  /**
   * Whether `name` (NUL-terminated) in `dirfd` has extended attributes, without following a final
   * symlink; undefined when it cannot be told (no /proc, or llistxattr failed). `here`: the
   * working directory is `dirfd`, and `name` one component (no "/", ".", "..").
   */
  #hasXattrsAt(dirfd: number, name: Uint8Array, here = false): boolean | undefined {
    while (here) {
      const n = num(this.#c.fn.llistxattr(name, null, 0n));
      if (n >= 0) return n > 0;
      if (this.#c.errno() !== EINTR) return undefined;
    }
    // listxattrat(2) (Linux 6.13) spares the walk through /proc.
    while (this.#listxattrat) {
      const n = num(
        this.#c.fn.sys_listxattrat(
          this.#c.sys.listxattrat,
          dirfd,
          name,
          AT_SYMLINK_NOFOLLOW,
          null,
          0n,
        ),
      );
      if (n >= 0) return n > 0;
      const errno = this.#c.errno();
      if (errno === EINTR) continue;
      if (errno !== ENOSYS && errno !== EPERM) return undefined;
      this.#listxattrat = false; // kernel too old, or seccomp refuses it
    }
    const procFd = this.#options.procFd;
    if (procFd === undefined) return undefined;
    let prefix = this.#xattrPrefixes.get(dirfd);
    if (prefix === undefined) {
      prefix = textEncoder.encode(`${procFd}/${dirfd}/`);
      // Its text depends on the descriptor's number only, so it holds for any open there.
      if (this.#xattrPrefixes.size < XATTR_PREFIXES) this.#xattrPrefixes.set(dirfd, prefix);
    }
    // `name` ends with its NUL: the path is read up to it, whatever the buffer holds after.
    if (this.#xattrPath.length < prefix.length + name.length) {
      this.#xattrPath = new Uint8Array(2 * (prefix.length + name.length));
    }
    const full = this.#xattrPath;
    full.set(prefix);
    full.set(name, prefix.length);
    for (;;) {
      const n = num(this.#c.fn.llistxattr(full, null, 0n));
      if (n >= 0) return n > 0;
      if (this.#c.errno() !== EINTR) return undefined;
    }
  }

  /** `lstat`, and a node handle for a directory while the budget lasts. */
  #lookup(w: Where): { stat: Stat; node?: number } | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      const stat = this.#statAt(r.dirfd, r.name);
      if (stat instanceof RpcFailure) return stat;
      if ((stat.mode & S_IFMT) !== S_IFDIR) return { stat };
      const node = this.#nodes.again(inodeKey(stat)) ??
        (this.#nodes.available ? this.#openNode(r, stat) : undefined);
      return node === undefined ? { stat } : { stat, node };
    } finally {
      this.#release_(r);
    }
  }

  /**
   * A node handle of directory `r`, whose Stat is `stat`; none once another inode is there (the
   * Stat answered is then of the old one) or past the budget.
   */
  #openNode(r: Resolved, stat: Stat): number | undefined {
    const f = this.#flags;
    const flags = f.O_PATH | f.O_DIRECTORY | f.O_NOFOLLOW | f.O_CLOEXEC;
    const name = r.name.subarray(0, r.name.length - 1); // without its NUL
    return this.#issueNode(this.#openRetry(r.dirfd, r.name, flags, 0), stat, name);
  }

  /**
   * Issues `fd` (negative: none) as a node handle; with `stat`, only when it is still that
   * inode. Closes it when not issued.
   */
  #issueNode(fd: number, stat?: Stat, name?: Uint8Array): number | undefined {
    if (fd < 0) return undefined;
    if (stat !== undefined) {
      const now = this.#statFd(fd);
      if (now instanceof RpcFailure || inodeKey(now) !== inodeKey(stat)) {
        this.#c.fn.close(fd);
        return undefined;
      }
    }
    return this.#nodes.issue(fd, stat && inodeKey(stat), name);
  }

  #lstat(w: Where): Stat | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      return this.#statAt(r.dirfd, r.name);
    } finally {
      this.#release_(r);
    }
  }

  // --- directories -------------------------------------------------------------------------

  #addHandle(fd: number, dir: boolean): number {
    const id = this.#nextHandle;
    this.#nextHandle = this.#nextHandle >= 0xffffffff ? 1 : this.#nextHandle + 1;
    this.#handles.set(id, dir ? { fd, dir: { position: 0n, buffered: [] } } : { fd });
    return id;
  }

  #openAt(w: Where, flags: number, mode = 0): number | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      for (;;) {
        const fd = this.#c.fn.openat(r.dirfd, r.name, flags, mode);
        if (fd >= 0) return fd;
        const errno = this.#c.errno();
        if (errno !== EINTR) return failure(errno);
      }
    } finally {
      this.#release_(r);
    }
  }

  #opendir(
    p: ParamsOf<"opendir">,
  ): { handle: number; entries?: EntryList; eof?: boolean; node?: number } | RpcFailure {
    const f = this.#flags;
    const fd = this.#openAt(p, f.O_RDONLY | f.O_DIRECTORY | f.O_NOFOLLOW | f.O_CLOEXEC);
    if (fd instanceof RpcFailure) return fd;
    const handle = this.#addHandle(fd, true);
    // The node's descriptor is a second one (the listing's is closed at release); only used as
    // a dirfd, so the shared position does not matter.
    const node = p.node && this.#nodes.available
      ? this.#issueNode(this.#c.fn.dup(fd), undefined, splitPath(p.path)?.at(-1))
      : undefined;
    const named = node === undefined ? { handle } : { handle, node };
    if (!p.readAhead) return named;
    const first = this.#readdir({ handle, offset: 0n, plus: true, maxEntries: p.readAhead });
    // Best effort: a failure is left to the client's first readdir.
    return first instanceof RpcFailure ? named : { ...named, ...first };
  }

  /** Reads the next batch of raw entries into `dir.buffered`; false at end of directory. */
  #fill(fd: number, dir: DirState): boolean | RpcFailure {
    const n = num(
      this.#c.fn.sys_getdents64(
        this.#c.sys.getdents64,
        fd,
        this.#dentBuf,
        BigInt(this.#dentBuf.length),
      ),
    );
    if (n < 0) return failure(this.#c.errno());
    if (n === 0) return false;
    const v = this.#dentView;
    let at = 0;
    while (at < n) {
      const reclen = v.getUint16(at + DIRENT64.reclen, true);
      if (reclen < DIRENT64_MIN_RECLEN || at + reclen > n) break;
      let end = at + DIRENT64.name;
      while (end < at + reclen && this.#dentBuf[end] !== 0) end++;
      dir.buffered.push({
        ino: v.getBigUint64(at + DIRENT64.ino, true),
        offset: v.getBigInt64(at + DIRENT64.off, true) & 0xffffffffffffffffn,
        type: this.#dentBuf[at + DIRENT64.type],
        name: this.#dentBuf.slice(at + DIRENT64.name, end),
      });
      at += reclen;
    }
    return true;
  }

  /**
   * Appends `raw` to `out`, with its attributes when `plus` (never for "." and ".."); false when
   * it vanished since getdents64 (not appended). `here`: the working directory is `fd`.
   */
  #addEntry(out: Listing, fd: number, raw: RawEntry, plus: boolean, here: boolean): boolean {
    if (plus && !isDotName(raw.name)) {
      const cname = withNul(raw.name);
      const errno = this.#statx(fd, cname, AT_SYMLINK_NOFOLLOW);
      if (errno === ENOENT) return false;
      if (errno === 0) {
        // The xattr probe leaves statx's buffer alone: it is copied into the record after it.
        const xattrs = this.#hasXattrsAt(fd, cname, here);
        out.records.add(raw.ino, raw.type, raw.offset, this.#statBuf, xattrs);
        out.names.push(decodeName(raw.name));
        return true;
      }
    }
    out.records.add(raw.ino, raw.type, raw.offset);
    out.names.push(decodeName(raw.name));
    return true;
  }

  /**
   * Every entry of the open directory `fd` from its start, as readdir `plus` answers them; the
   * count seen (before reading attributes) when there are more than `limit`; -1 when it cannot be
   * read. Works on getdents64's output in place (`#listBytes`): no object per entry but its name.
   * Not reentrant: the listing is complete before it returns.
   */
  #listAll(fd: number, limit: number): Listing | number {
    const listed = this.#listInPlace(fd, limit);
    // A large directory (one past `limit` too) may have grown it to megabytes: not kept.
    if (this.#listBytes.length > LIST_BYTES_KEPT) this.#resizeListBytes(0, 4 * DENT_CHUNK);
    return listed;
  }

  #listInPlace(fd: number, limit: number): Listing | number {
    let used = 0;
    let count = 0;
    for (;;) {
      if (this.#listBytes.length - used < DENT_CHUNK) this.#resizeListBytes(used);
      const n = num(
        this.#c.fn.sys_getdents64(
          this.#c.sys.getdents64,
          fd,
          this.#listBytes.subarray(used),
          BigInt(this.#listBytes.length - used),
        ),
      );
      if (n < 0) return -1;
      if (n === 0) break;
      const end = used + n;
      for (let at = used; at < end; count++) {
        const reclen = this.#listView.getUint16(at + DIRENT64.reclen, true);
        if (reclen < DIRENT64_MIN_RECLEN || at + reclen > end) break;
        at += reclen;
      }
      used = end;
      if (count > limit) return count;
    }
    const out = newListing();
    const bytes = this.#listBytes;
    // Without listxattrat, each entry's xattr probe names it relative to the working directory,
    // moved into `fd` for the listing: a path through /proc costs twice as much. The working
    // directory is the root's again before anything else runs.
    const here = !this.#listxattrat && this.#c.fn.fchdir(fd) === 0;
    try {
      for (let at = 0; at < used;) {
        const reclen = this.#listView.getUint16(at + DIRENT64.reclen, true);
        if (reclen < DIRENT64_MIN_RECLEN || at + reclen > used) break;
        const nameAt = at + DIRENT64.name;
        let nul = nameAt;
        while (nul < at + reclen && bytes[nul] !== 0) nul++;
        this.#addDirent(out, fd, at, bytes.subarray(nameAt, nul), here);
        at += reclen;
      }
    } finally {
      if (here) this.#c.fn.fchdir(this.#rootFd);
    }
    return out;
  }

  /**
   * Appends the entry at byte `at` of `#listBytes` (its name a view there, the NUL after it
   * within the record) with its attributes, unless it vanished since getdents64. `here`: the
   * working directory is `fd`.
   */
  #addDirent(out: Listing, fd: number, at: number, name: Uint8Array, here: boolean): void {
    const view = this.#listView;
    if (!isDotName(name)) {
      const end = name.byteOffset + name.length;
      const cname = this.#listBytes[end] === 0
        ? this.#listBytes.subarray(name.byteOffset, end + 1)
        : withNul(name);
      const errno = this.#statx(fd, cname, AT_SYMLINK_NOFOLLOW);
      if (errno === ENOENT) return;
      if (errno === 0) {
        // The xattr probe leaves statx's buffer alone: it is copied into the record after it.
        const xattrs = this.#hasXattrsAt(fd, cname, here);
        out.records.addDirent(view, at, this.#statBuf, xattrs);
        out.names.push(decodeName(name));
        return;
      }
    }
    out.records.addDirent(view, at);
    out.names.push(decodeName(name));
  }

  /**
   * Replaces `#listBytes` by one of `size` bytes (default: room for at least DENT_CHUNK more
   * after the first `used`), keeping those.
   */
  #resizeListBytes(
    used: number,
    size = Math.max(2 * this.#listBytes.length, used + DENT_CHUNK),
  ): void {
    const bigger = new Uint8Array(size);
    bigger.set(this.#listBytes.subarray(0, used));
    this.#listBytes = bigger;
    this.#listView = new DataView(bigger.buffer);
  }

  #readdir(p: ParamsOf<"readdir">): { entries: EntryList; eof: boolean } | RpcFailure {
    const h = this.#handles.get(p.handle);
    if (!h?.dir) return new RpcFailure("EBADF", `no directory handle ${p.handle}`);
    const dir = h.dir;
    if (p.offset !== dir.position) {
      const r = big(this.#c.fn.lseek64(h.fd, p.offset, SEEK_SET));
      if (r < 0n) return failure(this.#c.errno());
      dir.position = p.offset;
      dir.buffered = [];
    }
    const max = Math.min(p.maxEntries ?? 256, MAX_READDIR_ENTRIES);
    const out = newListing();
    let budget = READDIR_BUDGET;
    let eof = false;
    // As in #listInPlace: the xattr probe by name from the directory.
    const here = p.plus && !this.#listxattrat && this.#c.fn.fchdir(h.fd) === 0;
    try {
      while (out.names.length < max && budget > 0) {
        if (dir.buffered.length === 0) {
          const more = this.#fill(h.fd, dir);
          if (more instanceof RpcFailure) {
            if (out.names.length === 0) return more;
            break;
          }
          if (!more) {
            eof = true;
            break;
          }
          continue;
        }
        const raw = dir.buffered.shift()!;
        dir.position = raw.offset;
        if (this.#addEntry(out, h.fd, raw, p.plus, here)) {
          budget -= raw.name.length + RECORD_BYTES;
        }
      }
    } finally {
      if (here) this.#c.fn.fchdir(this.#rootFd);
    }
    return { entries: wireListing(out), eof: eof && dir.buffered.length === 0 };
  }

  // --- files -------------------------------------------------------------------------------

  #openFlags(wire: number): number {
    const f = this.#flags;
    const native = openFlagsFromWire(
      wire & ~(OpenFlags.O_CREAT | OpenFlags.O_EXCL | OpenFlags.O_PATH | OpenFlags.O_NOCTTY),
      this.#c.arch,
    );
    // O_NONBLOCK: opening or reading a fifo or device must never stall the single-threaded
    // satellite (regular files ignore it; FUSE serves special files in the host kernel).
    return native | f.O_NOFOLLOW | f.O_CLOEXEC | this.#nonblock;
  }

  #open(p: ParamsOf<"open">): Opened | RpcFailure | Later<Opened> {
    const fd = this.#openAt(p, this.#openFlags(p.flags));
    if (fd instanceof RpcFailure) return fd;
    const handle = this.#addHandle(fd, false);
    const quietClose = this.#quietClose(fd, p.flags);
    if (!p.readAhead && !p.stat) return { handle, quietClose };
    // The opened file's own attributes: whose file this is, whatever its name became.
    if (this.#statx(fd, EMPTY, AT_EMPTY_PATH) !== 0) return { handle, quietClose };
    const opened: Opened = { handle, stat: p.stat ? this.#readStat() : undefined, quietClose };
    if (!p.readAhead) return opened;
    // Regular files with a size only: procfs/sysfs files report 0 and are read on demand.
    const st = this.#statView;
    if ((statxMode(st) & S_IFMT) !== S_IFREG || statxSize(st) === 0n) return opened;
    // Best effort: a failed read leaves the data to the client's first READ.
    const size = Math.min(p.readAhead, MAX_OPEN_READ_AHEAD);
    const io = this.#options.io;
    if (io) {
      const later = new Later<Opened>();
      const submitted = io.submit({
        op: Op.PREAD,
        fd,
        args: [0n, BigInt(size)],
        handles: [handle],
        // Encoded (copied) when settled, before the slot is reused.
        done: (r, data) =>
          later.settle(
            r < 0n
              ? opened
              : { ...opened, data: data.subarray(DATA_OFFSET, DATA_OFFSET + Number(r)) },
          ),
      });
      if (submitted) return later;
    }
    // One buffer for every open: the reply is encoded (copied) before the next request.
    const data = this.#aheadBuf.subarray(0, size);
    const done = this.#whole("pread64", fd, data, 0n);
    return done < 0 ? opened : { ...opened, data: data.subarray(0, done) };
  }

  /**
   * `readFiles`: each name is opened here (a metadata call, like a walk's), and each file that
   * qualifies is read on an I/O worker when there is one, so the loop keeps answering meanwhile.
   */
  #readFiles(p: ParamsOf<"readFiles">): ReadFiles | RpcFailure | Later<ReadFiles> {
    const f = this.#flags;
    const dirfd = this.#openAt(
      { at: p.at, path: p.dir },
      f.O_PATH | f.O_DIRECTORY | f.O_NOFOLLOW | f.O_CLOEXEC,
    );
    if (dirfd instanceof RpcFailure) return dirfd;
    const files: ReadFiles = new Array(p.names.length).fill(undefined);
    const io = this.#options.io;
    const later = new Later<ReadFiles>();
    // Contents are copied into one buffer, used again once the answer is encoded (by the next
    // idle turn): a new one costs a page fault per 4 KiB (15 µs each, measured on a VM).
    const whenIdle = this.#options.whenIdle;
    const staging = (whenIdle ? this.#filesBuffers.pop() : undefined) ??
      new Uint8Array(MAX_READ_FILES_BYTES);
    let used = 0;
    const answered = (): void => {
      whenIdle?.(() => {
        if (this.#filesBuffers.length < FILES_BUFFERS_KEPT) this.#filesBuffers.push(staging);
      });
    };
    let pending = 0; // reads on the worker not yet done
    const settle = (): void => {
      if (--pending !== 0) return;
      later.settle(files);
      answered();
    };
    let budget = Math.min(p.maxBytes, MAX_READ_FILES_BYTES);
    try {
      for (let i = 0; i < p.names.length && budget > 0; i++) {
        const parts = splitPath(p.names[i]);
        if (parts?.length !== 1) continue; // one name, not a path
        const fd = this.#openRetry(
          dirfd,
          withNul(parts[0]),
          f.O_RDONLY | f.O_NOFOLLOW | f.O_NOCTTY | f.O_CLOEXEC | this.#nonblock,
          0,
        );
        if (fd < 0) continue;
        const st = this.#statView;
        const size = this.#statx(fd, EMPTY, AT_EMPTY_PATH) === 0 &&
            (statxMode(st) & S_IFMT) === S_IFREG
          ? Number(statxSize(st))
          : 0;
        if (size === 0 || size > p.maxFileBytes || size > budget) {
          this.#c.fn.close(fd);
          continue;
        }
        budget -= size;
        // The kernel starts reading it now: the worker's reads of a batch of cold files then
        // wait for disk reads under way together, not one after another.
        if (io !== undefined) this.#c.fn.posix_fadvise(fd, 0n, BigInt(size), POSIX_FADV_WILLNEED);
        const stat = this.#readStat();
        const take = (data: Uint8Array): void => {
          // Whole, as the stat says, or nothing: a file that changed meanwhile is read at its open.
          if (data.length !== size) return;
          staging.set(data, used);
          files[i] = { stat, data: staging.subarray(used, used + size) };
          used += size;
        };
        pending++;
        const submitted = io?.submit({
          op: Op.PREAD,
          fd,
          args: [0n, BigInt(size)],
          handles: [],
          done: (r, data) => {
            if (r >= 0n) take(data.subarray(DATA_OFFSET, DATA_OFFSET + Number(r)));
            this.#c.fn.close(fd);
            settle();
          },
        });
        if (submitted) continue;
        pending--;
        const data = this.#aheadBuf.subarray(0, size);
        const done = this.#whole("pread64", fd, data, 0n);
        if (done >= 0) take(data.subarray(0, done));
        this.#c.fn.close(fd);
      }
    } finally {
      this.#c.fn.close(dirfd);
    }
    if (pending !== 0) return later;
    answered();
    return files;
  }

  #create(p: ParamsOf<"create">): ResultOf<"create"> | RpcFailure {
    const r = this.#resolve(p);
    if (typeof r === "number") return failure(r);
    let fd: number;
    try {
      const flags = this.#openFlags(p.flags);
      fd = this.#openRetry(r.dirfd, r.name, flags | this.#creatExcl, p.mode & MODE_PERM_MASK);
      const created = fd >= 0;
      if (fd === -EEXIST && (p.flags & OpenFlags.O_EXCL) === 0) {
        // The name appeared after the kernel's negative lookup. The kernel takes a CREATE reply
        // for a file it created and checks no permission: open the file with the caller's rights.
        fd = p.owner && this.#euid === 0 && p.owner.uid !== 0
          ? this.#asCaller(p.owner, () => this.#openRetry(r.dirfd, r.name, flags, 0))
          : this.#openRetry(r.dirfd, r.name, flags, 0);
      }
      if (fd < 0) return failure(-fd);
      if (created && p.owner && this.#euid === 0) {
        const errno = this.#giveNew(r.dirfd, r.name, p.owner, fd, false);
        if (errno) {
          this.#c.fn.close(fd);
          return failure(errno);
        }
        // chown clears set-id bits; the requested mode wins
        if (p.mode & (S_ISUID | S_ISGID)) this.#c.fn.fchmod(fd, p.mode & MODE_PERM_MASK);
      }
    } finally {
      this.#release_(r);
    }
    const stat = this.#statFd(fd, true);
    if (stat instanceof RpcFailure) {
      this.#c.fn.close(fd);
      return stat;
    }
    const quietClose = this.#quietClose(fd, p.flags);
    return { handle: this.#addHandle(fd, false), stat, dir: this.#parentStat(p), quietClose };
  }

  /**
   * `quietClose` of a file opened with wire `flags` as `fd`: true when it is writable and its
   * close reports nothing its writes did not (see QUIET_CLOSE_FS_TYPES), else undefined.
   */
  #quietClose(fd: number, flags: number): true | undefined {
    if ((flags & (OpenFlags.O_WRONLY | OpenFlags.O_RDWR)) === 0) return undefined;
    const type = this.#fsType(fd);
    return type !== undefined && QUIET_CLOSE_FS_TYPES.has(type) ? true : undefined;
  }

  /** openat, retried on EINTR; the fd or -errno. */
  #openRetry(dirfd: number, name: Uint8Array, flags: number, mode: number): number {
    for (;;) {
      const fd = this.#c.fn.openat(dirfd, name, flags, mode);
      if (fd >= 0) return fd;
      const errno = this.#c.errno();
      if (errno !== EINTR) return -errno;
    }
  }

  /**
   * Runs `open` (an fd or -errno) with the caller's filesystem identity: fsuid/fsgid and no
   * supplementary groups (FUSE does not say which the caller has; fewer rights, never more).
   * Changes this thread only. -EEXIST when the identity cannot be taken (no CAP_SETUID, an id
   * the user namespace does not map): the kernel then reports EEXIST and drops its entry.
   */
  #asCaller(owner: { uid: number; gid: number }, open: () => number): number {
    const c = this.#c.fn;
    const count = c.getgroups(0, null);
    const groups = new Uint32Array(Math.max(count, 1));
    const saved = count > 0 ? c.getgroups(count, new Uint8Array(groups.buffer)) : 0;
    if (saved < 0 || num(c.sys_setgroups(this.#c.sys.setgroups, 0n, null)) < 0) return -EEXIST;
    try {
      c.setfsgid(owner.gid);
      c.setfsuid(owner.uid);
      // setfsuid/setfsgid answer the previous id: the same again means the change took
      if (c.setfsuid(owner.uid) !== owner.uid || c.setfsgid(owner.gid) !== owner.gid) {
        return -EEXIST;
      }
      return open();
    } finally {
      c.setfsuid(this.#euid);
      c.setfsgid(this.#egid);
      c.sys_setgroups(this.#c.sys.setgroups, BigInt(saved), new Uint8Array(groups.buffer));
    }
  }

  /**
   * Gives a just-created inode to `owner` (through `fd` when open). On failure the inode is
   * removed, if the name still holds it, and the errno returned, as a filesystem that cannot
   * record the owner refuses the creation: EOVERFLOW for an id the user namespace does not
   * map (the kernel's answer when the caller's fsuid is unmapped), else chown's errno.
   */
  #giveNew(
    dirfd: number,
    name: Uint8Array,
    owner: { uid: number; gid: number },
    fd: number | undefined,
    isDir: boolean,
  ): number {
    const known = this.#statx(
      fd ?? dirfd,
      fd === undefined ? name : EMPTY,
      fd === undefined ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH,
    ) === 0;
    const v = this.#statView;
    // Made as the caller's already (root's, or in a set-group-ID directory): a chown would only
    // move its ctime and send the change feed an event to drop.
    if (known && statxUid(v) === owner.uid && statxGid(v) === owner.gid) return 0;
    const ino = known ? statxIno(v) : undefined;
    const rc = fd === undefined
      ? this.#c.fn.fchownat(dirfd, name, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW)
      : this.#c.fn.fchown(fd, owner.uid, owner.gid);
    if (rc >= 0) return 0;
    const errno = this.#c.errno();
    if (
      ino !== undefined && this.#statx(dirfd, name, AT_SYMLINK_NOFOLLOW) === 0 &&
      statxIno(this.#statView) === ino
    ) {
      this.#c.fn.unlinkat(dirfd, name, isDir ? AT_REMOVEDIR : 0);
    }
    const answer = errno === EINVAL ? EOVERFLOW : errno;
    if (!this.#chownLogged) {
      this.#chownLogged = true;
      this.#options.log?.(
        `cannot give new inodes to uid ${owner.uid} gid ${owner.gid} (${errnoName(errno)}): ` +
          `creations for that caller fail with ${errnoName(answer)}` +
          (errno === EINVAL ? " (the engine's user namespace does not map the id)" : ""),
      );
    }
    return answer;
  }

  #read(p: ParamsOf<"read">): BytesReply | RpcFailure {
    const h = this.#handles.get(p.handle);
    if (!h) return new RpcFailure("EBADF", `no handle ${p.handle}`);
    if (p.size > MAX_IO_BYTES) {
      return failure(EINVAL, `read of ${p.size} bytes exceeds ${MAX_IO_BYTES}`);
    }
    const size = p.size;
    // One read buffer for every read: the main loop writes each large frame out before it
    // handles the next request (see Output.push), so the memory is free again by then.
    const reply = new BytesReply(size, this.#readBuf);
    const done = this.#whole("pread64", h.fd, reply.data, p.offset);
    if (done < 0) return failure(-done);
    reply.length = done;
    return reply;
  }

  /**
   * pread64 or pwrite64 of all of `buf` at `offset`, again after EINTR and short counts: the
   * bytes done (fewer at end of file or when a later call fails), or -errno when none were.
   */
  #whole(op: "pread64" | "pwrite64", fd: number, buf: Uint8Array, offset: bigint): number {
    let done = 0;
    while (done < buf.length) {
      const n = num(
        this.#c.fn[op](
          fd,
          done === 0 ? buf : buf.subarray(done),
          BigInt(buf.length - done),
          offset + BigInt(done),
        ),
      );
      if (n < 0) {
        const errno = this.#c.errno();
        if (errno === EINTR) continue;
        return done > 0 ? done : -errno;
      }
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  #write(p: ParamsOf<"write">): number | RpcFailure {
    const h = this.#handles.get(p.handle);
    if (!h) return new RpcFailure("EBADF", `no handle ${p.handle}`);
    const done = this.#whole("pwrite64", h.fd, p.data, p.offset);
    return done < 0 ? failure(-done) : done;
  }

  #release(handle: number): null | RpcFailure {
    const h = this.#handles.get(handle);
    if (!h) return new RpcFailure("EBADF", `no handle ${handle}`);
    this.#handles.delete(handle);
    return this.#c.fn.close(h.fd) < 0 ? failure(this.#c.errno()) : null;
  }

  #truncatePath(w: Where, size: bigint): null | RpcFailure {
    const f = this.#flags;
    const fd = this.#openAt(w, f.O_WRONLY | f.O_NOFOLLOW | f.O_CLOEXEC | this.#nonblock);
    if (fd instanceof RpcFailure) return fd;
    try {
      return this.#c.fn.ftruncate64(fd, size) < 0 ? failure(this.#c.errno()) : null;
    } finally {
      this.#c.fn.close(fd);
    }
  }

  #chmod(w: Where, mode: number): null | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      const perm = mode & MODE_PERM_MASK;
      if (!this.#fchmodat2) return this.#chmodPinned(r, perm);
      // One call that never follows a final symlink (EOPNOTSUPP for one): no window for a
      // symlink swapped in between a check and the change.
      const rc = num(
        this.#c.fn.sys_fchmodat2(this.#c.sys.fchmodat2, r.dirfd, r.name, perm, AT_SYMLINK_NOFOLLOW),
      );
      if (rc >= 0) return null;
      const errno = this.#c.errno();
      if (errno !== ENOSYS && errno !== EPERM) return failure(errno);
      // ENOSYS: kernel before 6.6. EPERM: seccomp, or a real refusal the fallback repeats.
      const fallback = this.#chmodPinned(r, perm);
      if (errno === ENOSYS || fallback === null) {
        this.#fchmodat2 = false;
        this.#options.log?.(
          `fchmodat2 unavailable (${errnoName(errno)}): chmod through O_PATH descriptors`,
        );
      }
      return fallback;
    } finally {
      this.#release_(r);
    }
  }

  /**
   * chmod of the inode an O_PATH|O_NOFOLLOW descriptor pins (through /proc/self/fd/N), so a
   * symlink swapped in after the open cannot redirect it. Without /proc, regular files and
   * directories only, reopened without following and checked to be the pinned inode.
   */
  #chmodPinned(r: Resolved, perm: number): null | RpcFailure {
    const f = this.#flags;
    const pinned = this.#openRetry(r.dirfd, r.name, f.O_PATH | f.O_NOFOLLOW | f.O_CLOEXEC, 0);
    if (pinned < 0) return failure(-pinned);
    try {
      const errno = this.#statx(pinned, EMPTY, AT_EMPTY_PATH);
      if (errno) return failure(errno);
      const type = statxMode(this.#statView) & S_IFMT;
      if (type === S_IFLNK) return failure(EOPNOTSUPP);
      const procFd = this.#options.procFd;
      if (procFd !== undefined) {
        const link = cString(`${procFd}/${pinned}`)!;
        return this.#c.fn.fchmodat(AT_FDCWD, link, perm, 0) < 0 ? failure(this.#c.errno()) : null;
      }
      if (type !== S_IFREG && type !== S_IFDIR) return failure(EOPNOTSUPP, "no /proc");
      const ino = statxIno(this.#statView);
      const fd = this.#openRetry(
        r.dirfd,
        r.name,
        f.O_RDONLY | f.O_NOFOLLOW | f.O_NOCTTY | f.O_CLOEXEC | this.#nonblock,
        0,
      );
      if (fd < 0) return failure(-fd === ELOOP ? EOPNOTSUPP : -fd);
      try {
        if (
          this.#statx(fd, EMPTY, AT_EMPTY_PATH) !== 0 ||
          statxIno(this.#statView) !== ino
        ) {
          return failure(ENOENT, "replaced meanwhile");
        }
        return this.#c.fn.fchmod(fd, perm) < 0 ? failure(this.#c.errno()) : null;
      } finally {
        this.#c.fn.close(fd);
      }
    } finally {
      this.#c.fn.close(pinned);
    }
  }

  #utimens(
    w: Where,
    atime: { sec: number; nsec: number } | undefined,
    mtime: { sec: number; nsec: number } | undefined,
  ): null | RpcFailure {
    const times = new BigInt64Array([
      BigInt(atime?.sec ?? 0),
      BigInt(atime?.nsec ?? UTIME_OMIT),
      BigInt(mtime?.sec ?? 0),
      BigInt(mtime?.nsec ?? UTIME_OMIT),
    ]);
    const buf = new Uint8Array(times.buffer);
    return this.#atOp(w, (d, n) => this.#c.fn.utimensat(d, n, buf, AT_SYMLINK_NOFOLLOW));
  }

  #setattr(p: ParamsOf<"setattr">): Stat | RpcFailure {
    if (p.uid !== undefined || p.gid !== undefined) {
      const r = this.#atOp(
        p,
        (d, n) =>
          this.#c.fn.fchownat(d, n, p.uid ?? 0xffffffff, p.gid ?? 0xffffffff, AT_SYMLINK_NOFOLLOW),
      );
      if (r) return r;
    }
    if (p.mode !== undefined) {
      const r = this.#chmod(p, p.mode);
      if (r) return r;
    }
    if (p.size !== undefined) {
      const size = p.size;
      const r = p.handle !== undefined
        ? this.#fdOp(p.handle, (fd) => this.#c.fn.ftruncate64(fd, size))
        : this.#truncatePath(p, size);
      if (r) return r;
    }
    if (p.atime !== undefined || p.mtime !== undefined) {
      const r = this.#utimens(p, p.atime, p.mtime);
      if (r) return r;
    }
    return this.#lstat(p);
  }

  /**
   * Creates an inode with `op`, gives it to `owner` when root (see #giveNew), and returns its
   * Stat.
   */
  #createNode(
    w: Where,
    owner: { uid: number; gid: number } | undefined,
    op: (dirfd: number, name: Uint8Array) => number,
    isDir = false,
  ): { stat: Stat; dir?: Stat; node?: number } | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      if (op(r.dirfd, r.name) < 0) return failure(this.#c.errno());
      if (owner && this.#euid === 0) {
        const errno = this.#giveNew(r.dirfd, r.name, owner, undefined, isDir);
        if (errno) return failure(errno);
      }
      const made = this.#made(r.dirfd, r.name);
      if (!isDir || made instanceof RpcFailure || !this.#nodes.available) return made;
      // A new directory is a node the kernel knows from now on: its handle comes along.
      const node = this.#openNode(r, made.stat);
      return node === undefined ? made : { ...made, node };
    } finally {
      this.#release_(r);
    }
  }

  /** Resolves two paths, runs `op` on both, and releases them whatever happens. */
  #withTwo<T>(
    a: Where,
    b: Where,
    op: (from: Resolved, to: Resolved) => T | RpcFailure,
  ): T | RpcFailure {
    const from = this.#resolve(a);
    if (typeof from === "number") return failure(from);
    const to = this.#resolve(b);
    if (typeof to === "number") {
      this.#release_(from);
      return failure(to);
    }
    try {
      return op(from, to);
    } finally {
      this.#release_(from);
      this.#release_(to);
    }
  }

  /** The Stat of `name` just made in `dirfd`, and the directory's after. */
  #made(dirfd: number, name: Uint8Array): { stat: Stat; dir?: Stat } | RpcFailure {
    const stat = this.#statAt(dirfd, name);
    if (stat instanceof RpcFailure) return stat;
    const dir = this.#dirStat(dirfd);
    return dir === undefined ? { stat } : { stat, dir };
  }

  #rename(p: ParamsOf<"rename">): { fromDir?: Stat; toDir?: Stat } | RpcFailure {
    return this.#withTwo(
      { at: p.fromAt, path: p.from },
      { at: p.toAt, path: p.to },
      (from, to) => {
        let r = num(
          this.#c.fn.sys_renameat2(
            this.#c.sys.renameat2,
            from.dirfd,
            from.name,
            to.dirfd,
            to.name,
            p.flags,
          ),
        );
        if (r < 0 && p.flags === 0 && this.#c.errno() === ENOSYS) {
          r = this.#c.fn.renameat(from.dirfd, from.name, to.dirfd, to.name);
        }
        if (r < 0) return failure(this.#c.errno());
        const out: { fromDir?: Stat; toDir?: Stat } = {};
        const fromDir = this.#dirStat(from.dirfd);
        if (fromDir !== undefined) out.fromDir = fromDir;
        const toDir = this.#dirStat(to.dirfd);
        if (toDir !== undefined) out.toDir = toDir;
        return out;
      },
    );
  }

  #link(p: ParamsOf<"link">): { stat: Stat; dir?: Stat } | RpcFailure {
    return this.#withTwo(
      { at: p.fromAt, path: p.from },
      { at: p.toAt, path: p.to },
      (from, to) => {
        if (this.#c.fn.linkat(from.dirfd, from.name, to.dirfd, to.name, 0) < 0) {
          return failure(this.#c.errno());
        }
        return this.#made(to.dirfd, to.name);
      },
    );
  }

  #readlink(w: Where): string | Uint8Array | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    try {
      const buf = new Uint8Array(PATH_MAX);
      const n = num(this.#c.fn.readlinkat(r.dirfd, r.name, buf, BigInt(buf.length)));
      if (n < 0) return failure(this.#c.errno());
      return decodeName(buf.subarray(0, n));
    } finally {
      this.#release_(r);
    }
  }

  #statfs(w: Where): StatFs | RpcFailure {
    const f = this.#flags;
    const fd = this.#openAt(w, f.O_PATH | f.O_NOFOLLOW | f.O_CLOEXEC);
    if (fd instanceof RpcFailure) return fd;
    try {
      const buf = new Uint8Array(128);
      if (this.#c.fn.fstatvfs(fd, buf) < 0) return failure(this.#c.errno());
      const v = new DataView(buf.buffer);
      const u = (at: number) => v.getBigUint64(at, true);
      return {
        bsize: Number(u(0) & 0xffffffffn),
        frsize: Number(u(8) & 0xffffffffn),
        blocks: u(16),
        bfree: u(24),
        bavail: u(32),
        files: u(40),
        ffree: u(48),
        favail: u(56),
        flags: Number(u(72) & 0xffffffffn),
        namemax: Number(u(80) & 0xffffffffn),
      };
    } finally {
      this.#c.fn.close(fd);
    }
  }

  // --- xattrs ------------------------------------------------------------------------------

  /**
   * Runs an xattr call on the target of `path` without following a final symlink: an l*xattr
   * call on /proc/self/fd/<parent fd>/<name> (the parent was opened beneath the root), or,
   * without /proc, an f*xattr call on a descriptor of the target opened from that parent with
   * O_NOFOLLOW. Never a path joined to the root. Without /proc, symlinks and special files
   * answer `special()` (user xattrs exist on regular files and directories only).
   */
  #xattr<T>(
    w: Where,
    op: (target: XattrTarget) => number,
    ok: (n: number) => T | RpcFailure,
    special: () => T | RpcFailure,
  ): T | RpcFailure {
    const r = this.#resolve(w);
    if (typeof r === "number") return failure(r);
    let fd = -1;
    try {
      let target: XattrTarget;
      const procFd = this.#options.procFd;
      if (procFd !== undefined) {
        const head = textEncoder.encode(`${procFd}/${r.dirfd}/`);
        const full = new Uint8Array(head.length + r.name.length);
        full.set(head);
        full.set(r.name, head.length); // r.name ends with its NUL
        target = { path: full };
      } else {
        fd = this.#openForXattr(r);
        if (fd === -ELOOP) return special();
        if (fd < 0) return failure(-fd);
        target = { fd };
      }
      for (;;) {
        const n = op(target);
        if (n >= 0) return ok(n);
        const errno = this.#c.errno();
        if (errno !== EINTR) return failure(errno);
      }
    } finally {
      if (fd >= 0) this.#c.fn.close(fd);
      this.#release_(r);
    }
  }

  /** A descriptor of a regular file or directory, not following a symlink; -ELOOP for others. */
  #openForXattr(r: Resolved): number {
    const f = this.#flags;
    const isPlain = () => {
      const type = statxMode(this.#statView) & S_IFMT;
      return type === S_IFREG || type === S_IFDIR;
    };
    const errno = this.#statx(r.dirfd, r.name, AT_SYMLINK_NOFOLLOW);
    if (errno) return -errno;
    if (!isPlain()) return -ELOOP;
    const fd = this.#openRetry(
      r.dirfd,
      r.name,
      f.O_RDONLY | f.O_NOFOLLOW | f.O_NOCTTY | f.O_CLOEXEC | this.#nonblock,
      0,
    );
    if (fd < 0) return fd;
    if (this.#statx(fd, EMPTY, AT_EMPTY_PATH) !== 0 || !isPlain()) {
      this.#c.fn.close(fd); // swapped for something else meanwhile
      return -ELOOP;
    }
    return fd;
  }

  #getxattr(w: Where, attr: string): Uint8Array | RpcFailure {
    const name = cString(attr);
    if (!name) return new RpcFailure("EINVAL");
    for (let attempt = 0; attempt < 4; attempt++) {
      const size = this.#xattr(
        w,
        (t) =>
          num(
            t.fd === undefined
              ? this.#c.fn.lgetxattr(t.path, name, null, 0n)
              : this.#c.fn.fgetxattr(t.fd, name, null, 0n),
          ),
        (n) => n,
        () => failure(ENODATA),
      );
      if (size instanceof RpcFailure) return size;
      const buf = new Uint8Array(Math.max(size, 1));
      const got = this.#xattr(
        w,
        (t) =>
          num(
            t.fd === undefined
              ? this.#c.fn.lgetxattr(t.path, name, buf, BigInt(size))
              : this.#c.fn.fgetxattr(t.fd, name, buf, BigInt(size)),
          ),
        (n) => buf.subarray(0, n),
        () => failure(ENODATA),
      );
      if (got instanceof RpcFailure && got.code === errnoName(ERANGE)) continue; // grew meanwhile
      return got;
    }
    return failure(ERANGE);
  }

  #listxattr(w: Where): (string | Uint8Array)[] | RpcFailure {
    for (let attempt = 0; attempt < 4; attempt++) {
      const size = this.#xattr(
        w,
        (t) =>
          num(
            t.fd === undefined
              ? this.#c.fn.llistxattr(t.path, null, 0n)
              : this.#c.fn.flistxattr(t.fd, null, 0n),
          ),
        (n) => n,
        () => 0,
      );
      if (size instanceof RpcFailure) return size;
      const buf = new Uint8Array(Math.max(size, 1));
      const got = this.#xattr(
        w,
        (t) =>
          num(
            t.fd === undefined
              ? this.#c.fn.llistxattr(t.path, buf, BigInt(size))
              : this.#c.fn.flistxattr(t.fd, buf, BigInt(size)),
          ),
        (n) => {
          const names: (string | Uint8Array)[] = [];
          let start = 0;
          for (let i = 0; i < n; i++) {
            if (buf[i] === 0) {
              if (i > start) names.push(decodeName(buf.subarray(start, i)));
              start = i + 1;
            }
          }
          return names;
        },
        () => [],
      );
      if (got instanceof RpcFailure && got.code === errnoName(ERANGE)) continue;
      return got;
    }
    return failure(ERANGE);
  }

  #copyFileRange(p: ParamsOf<"copyFileRange">): bigint | RpcFailure {
    const hin = this.#handles.get(p.handleIn);
    const hout = this.#handles.get(p.handleOut);
    if (!hin || !hout) return new RpcFailure("EBADF");
    const offIn = new BigInt64Array([BigInt.asIntN(64, p.offsetIn)]);
    const offOut = new BigInt64Array([BigInt.asIntN(64, p.offsetOut)]);
    const length = p.length > BigInt(MAX_IO_BYTES) * 1024n
      ? BigInt(MAX_IO_BYTES) * 1024n
      : p.length;
    const r = big(
      this.#c.fn.sys_copy_file_range(
        this.#c.sys.copy_file_range,
        hin.fd,
        new Uint8Array(offIn.buffer),
        hout.fd,
        new Uint8Array(offOut.buffer),
        length,
        p.flags,
      ),
    );
    return r < 0n ? failure(this.#c.errno()) : r;
  }
}

const OFFSET_KEYS = ["offset", "size", "length", "offsetIn", "offsetOut"] as const;

/** Wraps handlers so 64-bit params beyond off_t's range answer EINVAL, as the kernel would. */
function guardOffsets(handlers: Handlers): Handlers {
  const out: Record<string, (p: Record<string, unknown>) => unknown> = {};
  for (const [method, handler] of Object.entries(handlers)) {
    const fn = handler as (p: Record<string, unknown>) => unknown;
    out[method] = (p) => {
      for (const key of OFFSET_KEYS) {
        const v = p[key];
        if (typeof v === "bigint" && v > I64_MAX) return failure(EINVAL, `${key} beyond 2^63-1`);
      }
      return fn(p);
    };
  }
  return out as unknown as Handlers;
}
