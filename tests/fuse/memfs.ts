/**
 * A memory filesystem implementing the FUSE layer's `FileSystem` fully (for tests and the
 * benchmark). Permissions are left to the kernel (`default_permissions`); ownership comes from
 * the request context; timestamps have nanosecond fields; files are sparse chunk maps, so
 * offsets beyond 4 GiB cost no memory.
 *
 * @module
 */

import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MODE_PERM_MASK,
  O_ACCMODE,
  O_APPEND,
  O_RDONLY,
  O_TRUNC,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_ISGID,
  S_ISUID,
  SEEK_DATA,
  SEEK_HOLE,
  XATTR_CREATE,
  XATTR_REPLACE,
} from "../../src/linux/mod.ts";
import {
  type Attr,
  type AttrResult,
  type Created,
  type DirChanged,
  type DirEntry,
  EEXIST,
  EINVAL,
  EISDIR,
  ENODATA,
  ENOENT,
  ENOTDIR,
  ENOTEMPTY,
  type Entry,
  ENXIO,
  EOPNOTSUPP,
  type Errno,
  type FileSystem,
  type Node,
  type Opened,
  type RequestContext,
  type SetAttrChanges,
  type StatFs,
  type Timestamp,
  type WriteInfo,
} from "../../src/fuse/mod.ts";

/** Bytes per chunk of a file's sparse chunk map. */
const CHUNK = 1 << 20;

let lastNs = 0n;
/** Current time with nanosecond fields (strictly increasing, so changes are visible). */
/** A context for calling a filesystem in-process, outside any request: root, nothing to cancel. */
export function localContext(): RequestContext {
  return { uid: 0, gid: 0, pid: 0, unique: 0n, opcode: 0, signal: new AbortController().signal };
}

/** The root node as the FUSE layer knows it, for calling a filesystem in-process. */
export function rootNode(): Node {
  return { nodeId: 1n, key: "", ino: 1n, parent: undefined, name: "", path: "/", data: undefined };
}

export function now(): Timestamp {
  let ns = BigInt(Date.now()) * 1_000_000n +
    BigInt(Math.floor((performance.now() % 1) * 1_000_000));
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}

/** A sparse byte store: chunk index → bytes (a chunk may be shorter than CHUNK). */
export class SparseData {
  chunks = new Map<number, Uint8Array>();
  size = 0;

  read(offset: number, length: number): Uint8Array {
    if (offset >= this.size) return new Uint8Array(0);
    const end = Math.min(this.size, offset + length);
    const first = Math.floor(offset / CHUNK);
    // Fast path: a full range inside one chunk is returned without copying.
    if (Math.floor((end - 1) / CHUNK) === first) {
      const c = this.chunks.get(first);
      const from = offset - first * CHUNK, to = end - first * CHUNK;
      if (c && c.length >= to) return c.subarray(from, to);
    }
    const out = new Uint8Array(end - offset);
    for (let i = first; i * CHUNK < end; i++) {
      const c = this.chunks.get(i);
      if (!c) continue;
      const base = i * CHUNK;
      const from = Math.max(offset, base), to = Math.min(end, base + c.length);
      if (to > from) out.set(c.subarray(from - base, to - base), from - offset);
    }
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const index = Math.floor(pos / CHUNK);
      const within = pos - index * CHUNK;
      const n = Math.min(CHUNK - within, data.length - done);
      let c = this.chunks.get(index);
      if (!c || c.length < within + n) {
        const grown = new Uint8Array(
          within + n >= CHUNK / 2 ? CHUNK : Math.max(4096, 2 ** Math.ceil(Math.log2(within + n))),
        );
        if (c) grown.set(c);
        c = grown;
        this.chunks.set(index, c);
      }
      c.set(data.subarray(done, done + n), within);
      done += n;
    }
    this.size = Math.max(this.size, offset + data.length);
  }

  /** Zeroes [from, to) (dropping whole chunks). */
  zero(from: number, to: number): void {
    for (const [i, c] of this.chunks) {
      const base = i * CHUNK;
      if (base >= to || base + c.length <= from) continue;
      if (from <= base && to >= base + CHUNK) this.chunks.delete(i);
      else c.fill(0, Math.max(0, from - base), Math.min(c.length, to - base));
    }
  }

  truncate(size: number): void {
    if (size < this.size) this.zero(size, this.size);
    this.size = size;
  }

  get blocks(): number {
    let bytes = 0;
    for (const c of this.chunks.values()) bytes += c.length;
    return Math.ceil(bytes / 512);
  }

  seek(offset: number, whence: number): number | Errno {
    if (offset >= this.size) return ENXIO;
    let i = Math.floor(offset / CHUNK);
    if (whence === SEEK_DATA) {
      const last = Math.floor((this.size - 1) / CHUNK);
      const present = [...this.chunks.keys()].filter((k) => k >= i && k <= last).sort((a, b) =>
        a - b
      );
      if (present.length === 0) return ENXIO;
      return Math.max(offset, present[0] * CHUNK);
    }
    while (i * CHUNK < this.size && this.chunks.has(i)) i++;
    return Math.min(this.size, Math.max(offset, i * CHUNK));
  }
}

/** One file, directory, symlink or special file. */
export class Inode {
  readonly ino: bigint;
  mode: number;
  nlink = 1;
  uid: number;
  gid: number;
  rdev = 0;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  data: SparseData | undefined;
  target = "";
  entries: Map<string, Inode> | undefined;
  parent: Inode | undefined;
  xattrs = new Map<string, Uint8Array>();

  constructor(ino: bigint, mode: number, uid: number, gid: number) {
    this.ino = ino;
    this.mode = mode;
    this.uid = uid;
    this.gid = gid;
    this.atime = this.mtime = this.ctime = now();
    if ((mode & S_IFMT) === S_IFREG) this.data = new SparseData();
    if ((mode & S_IFMT) === S_IFDIR) {
      this.entries = new Map();
      this.nlink = 2;
    }
  }

  get isDir(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }

  get size(): number {
    if (this.data) return this.data.size;
    if ((this.mode & S_IFMT) === S_IFLNK) return new TextEncoder().encode(this.target).length;
    if (this.entries) return 4096;
    return 0;
  }

  attr(): Attr {
    return {
      ino: this.ino,
      mode: this.mode,
      nlink: this.nlink,
      uid: this.uid,
      gid: this.gid,
      rdev: this.rdev,
      size: this.size,
      blocks: this.data ? this.data.blocks : 0,
      atime: this.atime,
      mtime: this.mtime,
      ctime: this.ctime,
    };
  }
}

interface FileHandle {
  inode: Inode;
  flags: number;
  /** Directory listing snapshot (opendir), refreshed when read from offset 0. */
  listing?: { name: string; inode: Inode }[];
  /** A write answered ahead failed: the next flush reports it. */
  error?: Errno;
}

/** Options of the memory filesystem. */
export interface MemFsOptions {
  /** Timeouts in answers (seconds); undefined = the mount's defaults. */
  entryTimeout?: number;
  attrTimeout?: number;
  /** Answer open with DIRECT_IO (no page cache) — used by the read benchmark variants. */
  directIo?: boolean;
  /** Answer open with KEEP_CACHE. */
  keepCache?: boolean;
  /** Owner of the root directory (default 0:0, mode 0755; tests may use 0777). */
  rootUid?: number;
  rootGid?: number;
  rootMode?: number;
  /** Report `noXattrs` in entries and attributes of inodes without xattrs (the shortcut). */
  reportNoXattrs?: boolean;
  /**
   * Answer read-only opens (with KEEP_CACHE) and opendirs (with CACHE_DIR) as reusable for
   * this many seconds (cached opens).
   */
  reuseOpens?: number;
  /** Report entries and attributes `stable` (cached attributes). */
  stableAttrs?: boolean;
  /**
   * Changes of names answer the directory's attributes after them (`DirChanged`, `Entry.dir`).
   */
  dirChanged?: boolean;
  /** Let the layer answer this many bytes of writes ahead per writable open (`writeAhead`). */
  writeAhead?: number;
  /** Let the layer answer flushes before a write without asking (`quietFlush`). */
  quietFlush?: boolean;
}

/** The memory filesystem. */
export class MemFs implements FileSystem<FileHandle> {
  readonly root: Inode;
  #inodes = new Map<bigint, Inode>();
  #nextIno = 2n;
  #options: MemFsOptions;
  /** Number of FORGET drops seen (for tests of the lookup count protocol). */
  forgotten = 0;
  /** Number of getxattr calls that reached the filesystem. */
  getxattrCalls = 0;
  /** Calls of open/opendir, and handles made for opens the session answered itself. */
  openCalls = 0;
  opendirCalls = 0;
  cachedHandles = 0;
  /** Calls of getattr. */
  getattrCalls = 0;
  /** Writes the layer answered before handing them here (`WriteInfo.answered`). */
  answeredWrites = 0;
  /** Flushes that reached the filesystem. */
  flushes = 0;

  constructor(options: MemFsOptions = {}) {
    this.#options = options;
    this.root = new Inode(
      1n,
      S_IFDIR | (options.rootMode ?? 0o755),
      options.rootUid ?? 0,
      options.rootGid ?? 0,
    );
    this.root.parent = this.root;
    this.#inodes.set(1n, this.root);
  }

  #get(node: Node): Inode | Errno {
    return this.#inodes.get(node.ino) ?? ENOENT;
  }

  #dir(node: Node): Inode | Errno {
    const d = this.#inodes.get(node.ino);
    if (!d) return ENOENT;
    if (!d.entries) return ENOTDIR;
    return d;
  }

  #entry(inode: Inode): Entry {
    const entry: Entry = {
      attr: inode.attr(),
      entryTimeout: this.#options.entryTimeout,
      attrTimeout: this.#options.attrTimeout,
    };
    if (this.#options.reportNoXattrs && inode.xattrs.size === 0) entry.noXattrs = true;
    if (this.#options.stableAttrs) entry.stable = true;
    return entry;
  }

  /** The entry of `inode`, just made or linked in `dir`. */
  #made(dir: Inode, inode: Inode): Entry {
    const entry = this.#entry(inode);
    if (this.#options.dirChanged) entry.dir = this.#attr(dir);
    return entry;
  }

  #attr(inode: Inode): AttrResult {
    const result: AttrResult = { attr: inode.attr(), timeout: this.#options.attrTimeout };
    if (this.#options.stableAttrs) result.stable = true;
    if (this.#options.reportNoXattrs && inode.xattrs.size === 0) result.noXattrs = true;
    return result;
  }

  #new(ctx: RequestContext, parent: Inode, mode: number): Inode {
    let gid = ctx.gid;
    if (parent.mode & S_ISGID) {
      gid = parent.gid;
      if ((mode & S_IFMT) === S_IFDIR) mode |= S_ISGID;
    }
    const inode = new Inode(this.#nextIno++, mode, ctx.uid, gid);
    this.#inodes.set(inode.ino, inode);
    return inode;
  }

  #touchDir(dir: Inode): void {
    dir.mtime = dir.ctime = now();
  }

  #add(dir: Inode, name: string, inode: Inode): void {
    dir.entries!.set(name, inode);
    if (inode.isDir) {
      inode.parent = dir;
      dir.nlink++;
    }
    this.#touchDir(dir);
  }

  /** Removes the name; the inode lives on while open or looked up. */
  #drop(dir: Inode, name: string, inode: Inode): void {
    dir.entries!.delete(name);
    if (inode.isDir) {
      dir.nlink--;
      inode.nlink = 0;
    } else {
      inode.nlink--;
    }
    inode.ctime = now();
    this.#touchDir(dir);
  }

  lookup(_ctx: RequestContext, parent: Node, name: string): Entry | Errno {
    const dir = this.#dir(parent);
    if (!(dir instanceof Inode)) return dir;
    const inode = dir.entries!.get(name);
    return inode ? this.#entry(inode) : ENOENT;
  }

  forget(node: Node): void {
    this.forgotten++;
    const inode = this.#inodes.get(node.ino);
    if (inode && inode.nlink === 0) this.#inodes.delete(node.ino);
  }

  getattr(_ctx: RequestContext, node: Node, handle: FileHandle | undefined): AttrResult | Errno {
    this.getattrCalls++;
    const inode = handle?.inode ?? this.#get(node);
    return inode instanceof Inode ? this.#attr(inode) : inode;
  }

  setattr(
    _ctx: RequestContext,
    node: Node,
    c: SetAttrChanges,
    handle: FileHandle | undefined,
  ): AttrResult | Errno {
    const inode = handle?.inode ?? this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    const t = now();
    if (c.size !== undefined) {
      if (inode.isDir) return EISDIR;
      if (!inode.data) return EINVAL;
      inode.data.truncate(c.size);
      inode.mtime = t;
    }
    if (c.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | (c.mode & MODE_PERM_MASK);
    if (c.uid !== undefined) inode.uid = c.uid;
    if (c.gid !== undefined) inode.gid = c.gid;
    if (c.killSuidgid) inode.mode &= ~(S_ISUID | S_ISGID);
    if (c.atime !== undefined) inode.atime = c.atime === "now" ? t : c.atime;
    if (c.mtime !== undefined) inode.mtime = c.mtime === "now" ? t : c.mtime;
    inode.ctime = c.ctime ?? t;
    return this.#attr(inode);
  }

  readlink(_ctx: RequestContext, node: Node): string | Errno {
    const inode = this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    if ((inode.mode & S_IFMT) !== S_IFLNK) return EINVAL;
    return inode.target;
  }

  symlink(ctx: RequestContext, parent: Node, name: string, target: string): Entry | Errno {
    const dir = this.#dir(parent);
    if (!(dir instanceof Inode)) return dir;
    if (dir.entries!.has(name)) return EEXIST;
    const inode = this.#new(ctx, dir, S_IFLNK | 0o777);
    inode.target = target;
    this.#add(dir, name, inode);
    return this.#made(dir, inode);
  }

  mknod(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    rdev: number,
  ): Entry | Errno {
    const dir = this.#dir(parent);
    if (!(dir instanceof Inode)) return dir;
    if (dir.entries!.has(name)) return EEXIST;
    if ((mode & S_IFMT) === S_IFDIR || (mode & S_IFMT) === S_IFLNK) return EINVAL;
    const inode = this.#new(ctx, dir, (mode & S_IFMT) === 0 ? mode | S_IFREG : mode);
    inode.rdev = rdev;
    this.#add(dir, name, inode);
    return this.#made(dir, inode);
  }

  mkdir(ctx: RequestContext, parent: Node, name: string, mode: number): Entry | Errno {
    const dir = this.#dir(parent);
    if (!(dir instanceof Inode)) return dir;
    if (dir.entries!.has(name)) return EEXIST;
    const inode = this.#new(ctx, dir, S_IFDIR | (mode & MODE_PERM_MASK));
    this.#add(dir, name, inode);
    return this.#made(dir, inode);
  }

  unlink(_ctx: RequestContext, parent: Node, name: string): void | DirChanged | Errno {
    const dir = this.#dir(parent);
    if (!(dir instanceof Inode)) return dir;
    const inode = dir.entries!.get(name);
    if (!inode) return ENOENT;
    if (inode.isDir) return EISDIR;
    this.#drop(dir, name, inode);
    return this.#options.dirChanged ? { dir: this.#attr(dir) } : undefined;
  }

  rmdir(_ctx: RequestContext, parent: Node, name: string): void | DirChanged | Errno {
    const dir = this.#dir(parent);
    if (!(dir instanceof Inode)) return dir;
    const inode = dir.entries!.get(name);
    if (!inode) return ENOENT;
    if (!inode.isDir) return ENOTDIR;
    if (inode.entries!.size > 0) return ENOTEMPTY;
    this.#drop(dir, name, inode);
    return this.#options.dirChanged ? { dir: this.#attr(dir) } : undefined;
  }

  rename(
    _ctx: RequestContext,
    parent: Node,
    name: string,
    newParent: Node,
    newName: string,
    flags: number,
  ): void | Errno {
    const from = this.#dir(parent);
    if (!(from instanceof Inode)) return from;
    const to = this.#dir(newParent);
    if (!(to instanceof Inode)) return to;
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
    const inode = from.entries!.get(name);
    if (!inode) return ENOENT;
    const target = to.entries!.get(newName);
    // A directory cannot move below itself.
    if (inode.isDir) {
      for (let d: Inode = to;; d = d.parent!) {
        if (d === inode) return EINVAL;
        if (d === this.root) break;
      }
    }
    if (flags & RENAME_EXCHANGE) {
      if (!target) return ENOENT;
      if (target.isDir) {
        for (let d: Inode = from;; d = d.parent!) {
          if (d === target) return EINVAL;
          if (d === this.root) break;
        }
      }
      from.entries!.set(name, target);
      to.entries!.set(newName, inode);
      if (inode.isDir !== target.isDir && from !== to) {
        if (inode.isDir) {
          from.nlink--;
          to.nlink++;
        } else {
          to.nlink--;
          from.nlink++;
        }
      }
      if (inode.isDir) inode.parent = to;
      if (target.isDir) target.parent = from;
      inode.ctime = target.ctime = now();
      this.#touchDir(from);
      this.#touchDir(to);
      return;
    }
    if (target) {
      if (flags & RENAME_NOREPLACE) return EEXIST;
      if (target === inode) return;
      if (inode.isDir && !target.isDir) return ENOTDIR;
      if (!inode.isDir && target.isDir) return EISDIR;
      if (target.isDir && target.entries!.size > 0) return ENOTEMPTY;
      this.#drop(to, newName, target);
    }
    from.entries!.delete(name);
    if (inode.isDir) from.nlink--;
    this.#add(to, newName, inode);
    inode.ctime = now();
    this.#touchDir(from);
  }

  link(_ctx: RequestContext, node: Node, newParent: Node, newName: string): Entry | Errno {
    const inode = this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    const dir = this.#dir(newParent);
    if (!(dir instanceof Inode)) return dir;
    if (inode.isDir) return EINVAL;
    if (dir.entries!.has(newName)) return EEXIST;
    inode.nlink++;
    inode.ctime = now();
    this.#add(dir, newName, inode);
    return this.#made(dir, inode);
  }

  #opened(inode: Inode, flags: number): Opened<FileHandle> {
    return {
      handle: { inode, flags },
      directIo: this.#options.directIo,
      keepCache: this.#options.keepCache,
      writeAhead: (flags & O_ACCMODE) === O_RDONLY ? undefined : this.#options.writeAhead,
      quietFlush: this.#options.quietFlush,
    };
  }

  open(_ctx: RequestContext, node: Node, flags: number): Opened<FileHandle> | Errno {
    this.openCalls++;
    const inode = this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    const reuse = this.#options.reuseOpens;
    if (reuse !== undefined && (flags & (O_ACCMODE | O_TRUNC)) === O_RDONLY) {
      return { handle: { inode, flags }, keepCache: true, reuse };
    }
    if (inode.isDir && (flags & O_ACCMODE) !== O_RDONLY) return EISDIR;
    if ((flags & O_TRUNC) && inode.data && (flags & O_ACCMODE) !== O_RDONLY) {
      inode.data.truncate(0);
      inode.mtime = inode.ctime = now();
    }
    return this.#opened(inode, flags);
  }

  create(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    flags: number,
  ): Created<FileHandle> | Errno {
    const dir = this.#dir(parent);
    if (!(dir instanceof Inode)) return dir;
    let inode = dir.entries!.get(name);
    if (inode) {
      if (flags & 0o200 /* O_EXCL */) return EEXIST;
      if (inode.isDir) return EISDIR;
      if ((flags & O_TRUNC) && inode.data) inode.data.truncate(0);
    } else {
      inode = this.#new(ctx, dir, S_IFREG | (mode & MODE_PERM_MASK));
      this.#add(dir, name, inode);
    }
    return { ...this.#opened(inode, flags), entry: this.#made(dir, inode) };
  }

  read(
    _ctx: RequestContext,
    _node: Node,
    handle: FileHandle,
    offset: number,
    size: number,
  ): Uint8Array | Errno {
    const inode = handle?.inode;
    if (!inode) return EINVAL;
    if (!inode.data) return inode.isDir ? EISDIR : EINVAL;
    return inode.data.read(offset, size);
  }

  write(
    _ctx: RequestContext,
    _node: Node,
    handle: FileHandle,
    offset: number,
    data: Uint8Array,
    info?: WriteInfo,
  ): number | Errno {
    const inode = handle?.inode;
    if (info?.answered) this.answeredWrites++;
    if (!inode?.data) {
      if (info?.answered && handle !== undefined) handle.error ??= EINVAL;
      return EINVAL;
    }
    const at = handle.flags & O_APPEND ? inode.data.size : offset;
    inode.data.write(at, data);
    inode.mtime = inode.ctime = now();
    return data.length;
  }

  flush(
    _ctx: RequestContext,
    _node: Node,
    handle: FileHandle,
  ): void | Errno {
    this.flushes++;
    const error = handle?.error;
    if (handle !== undefined) handle.error = undefined;
    return error;
  }

  release(): void {}

  fsync(): void {}

  fallocate(
    _ctx: RequestContext,
    _node: Node,
    handle: FileHandle,
    offset: number,
    length: number,
    mode: number,
  ): void | Errno {
    const data = handle?.inode.data;
    if (!data) return EINVAL;
    if (mode === 0) {
      if (offset + length > data.size) data.truncate(offset + length);
    } else if (mode === FALLOC_FL_KEEP_SIZE) {
      // Nothing to reserve in memory.
    } else if (mode === (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
      data.zero(offset, Math.min(data.size, offset + length));
    } else {
      return EOPNOTSUPP;
    }
    handle.inode.mtime = handle.inode.ctime = now();
  }

  lseek(
    _ctx: RequestContext,
    _node: Node,
    handle: FileHandle,
    offset: number,
    whence: number,
  ): number | Errno {
    const data = handle?.inode.data;
    if (!data) return EINVAL;
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) return EINVAL;
    return data.seek(offset, whence);
  }

  copyFileRange(
    _ctx: RequestContext,
    _nodeIn: Node,
    handleIn: FileHandle,
    offsetIn: number,
    _nodeOut: Node,
    handleOut: FileHandle,
    offsetOut: number,
    length: number,
  ): number | Errno {
    const src = handleIn?.inode.data, dst = handleOut?.inode.data;
    if (!src || !dst) return EINVAL;
    const bytes = src.read(offsetIn, length).slice();
    dst.write(offsetOut, bytes);
    handleOut.inode.mtime = handleOut.inode.ctime = now();
    return bytes.length;
  }

  opendir(_ctx: RequestContext, node: Node, flags: number): Opened<FileHandle> | Errno {
    this.opendirCalls++;
    const dir = this.#dir(node);
    if (!(dir instanceof Inode)) return dir;
    const reuse = this.#options.reuseOpens;
    if (reuse !== undefined) return { handle: { inode: dir, flags }, cacheDir: true, reuse };
    return { handle: { inode: dir, flags } };
  }

  cachedHandle(node: Node, _dir: boolean): FileHandle {
    this.cachedHandles++;
    return { inode: this.#get(node) as Inode, flags: O_RDONLY };
  }

  readdir(
    _ctx: RequestContext,
    _node: Node,
    handle: FileHandle,
    offset: number,
    plus: boolean,
  ): DirEntry[] | Errno {
    const dir = handle?.inode;
    if (!dir?.entries) return ENOTDIR;
    if (offset === 0 || !handle.listing) {
      handle.listing = [{ name: ".", inode: dir }, { name: "..", inode: dir.parent ?? dir }];
      for (const [name, inode] of dir.entries) handle.listing.push({ name, inode });
    }
    const out: DirEntry[] = [];
    const end = Math.min(handle.listing.length, offset + 512);
    for (let i = offset; i < end; i++) {
      const { name, inode } = handle.listing[i];
      out.push({
        name,
        ino: inode.ino,
        mode: inode.mode,
        next: i + 1,
        entry: plus ? this.#entry(inode) : undefined,
      });
    }
    return out;
  }

  releasedir(): void {}

  fsyncdir(): void {}

  statfs(): StatFs {
    let blocks = 0;
    for (const inode of this.#inodes.values()) if (inode.data) blocks += inode.data.blocks;
    const total = 1 << 24; // 64 GiB of 4 KiB blocks
    const used = Math.ceil(blocks / 8);
    return {
      bsize: 4096,
      frsize: 4096,
      blocks: total,
      bfree: Math.max(0, total - used),
      bavail: Math.max(0, total - used),
      files: 1_000_000,
      ffree: 1_000_000 - this.#inodes.size,
      namelen: 255,
    };
  }

  setxattr(
    _ctx: RequestContext,
    node: Node,
    name: string,
    value: Uint8Array,
    flags: number,
  ): void | Errno {
    const inode = this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    const exists = inode.xattrs.has(name);
    if ((flags & XATTR_CREATE) && exists) return EEXIST;
    if ((flags & XATTR_REPLACE) && !exists) return ENODATA;
    inode.xattrs.set(name, value.slice());
    inode.ctime = now();
  }

  getxattr(_ctx: RequestContext, node: Node, name: string): Uint8Array | Errno {
    this.getxattrCalls++;
    const inode = this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    return inode.xattrs.get(name) ?? ENODATA;
  }

  listxattr(_ctx: RequestContext, node: Node): string[] | Errno {
    const inode = this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    return [...inode.xattrs.keys()];
  }

  removexattr(_ctx: RequestContext, node: Node, name: string): void | Errno {
    const inode = this.#get(node);
    if (!(inode instanceof Inode)) return inode;
    if (!inode.xattrs.delete(name)) return ENODATA;
    inode.ctime = now();
  }
}

/** A MemFs remembering the nodes the kernel asked attributes of, by path (to change them
 * behind the kernel's back in tests). */
export class TrackedFs extends MemFs {
  nodes = new Map<string, Node>();
  override getattr(
    ctx: RequestContext,
    node: Node,
    handle: FileHandle | undefined,
  ): AttrResult | Errno {
    if (node.path) this.nodes.set(node.path, node);
    return super.getattr(ctx, node, handle);
  }
}
