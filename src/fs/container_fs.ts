/**
 * The container filesystem: the FUSE layer's `FileSystem` implemented with satellite RPCs.
 *
 * Invariants:
 * - Every operation names its object by the node's current path (kept by the FUSE layer), made
 *   relative to the satellite's root ("" is the root). A node without a path (unlinked) is only
 *   reachable through an open handle.
 * - Failures are errno values; an RPC failure's errno passes through unchanged, so the container's
 *   own answer (ENOSPC, EROFS, EACCES…) reaches the caller.
 * - New inodes are owned by the calling uid/gid (the gid of a set-group-ID parent directory wins,
 *   as on ext4).
 * - Attributes last seen for a node are kept in `node.data` (for set-group-ID inheritance and
 *   the page-cache decision on open).
 *
 * @module
 */

import {
  type Attr,
  type AttrResult,
  type Created,
  type DirEntry,
  EINVAL,
  EIO,
  ENODATA,
  ENOENT,
  type Entry,
  type Errno,
  errnoOf,
  type FileSystem,
  type Logger,
  type Node,
  O_ACCMODE,
  O_RDONLY,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  type Opened,
  type ReleaseInfo,
  type RequestContext,
  type SetAttrChanges,
  type StatFs,
  type Timestamp,
  type WriteInfo,
} from "../fuse/mod.ts";
import {
  type CallOptions,
  decodeDev,
  type DirEntry as WireDirEntry,
  encodeDev,
  MAX_IO_BYTES,
  MAX_OPEN_READ_AHEAD,
  openFlagsToWire,
  type RpcCalls,
  type RpcResult,
  type Stat,
  UTIME_NOW,
} from "../protocol/mod.ts";

/** An open file or directory: the satellite's handle id. */
export interface Handle {
  readonly id: number;
  readonly dir: boolean;
  /** Identity (`Entry.key`) of the open file; "" for directories. */
  readonly key: string;
  /** Directory listing read ahead from the satellite (dirs only). */
  listing?: Listing;
  /** Writes are answered once sent (regular files with page cache, no O_SYNC/O_DSYNC). */
  writeBehind?: boolean;
  /** Writes sent and not yet answered by the satellite, and their bytes. */
  pending?: Set<Promise<void>>;
  pendingBytes?: number;
  /** First failure of a write answered early: reported by the next write, flush or fsync. */
  writeError?: Errno;
  /** Written since the last flush (a clean flush has nothing to report). */
  dirty?: boolean;
  /** The file's first bytes, read along with the open; until when (ms) they may serve READs. */
  prefetch?: Uint8Array;
  prefetchUntil?: number;
  /** `prefetch` holds the whole file (the read-ahead came back short). */
  prefetchEof?: boolean;
}

/**
 * A directory stream read ahead from the satellite. Cookies given to the kernel are positions
 * (entries before it), dense from 0; `cookies[k]` is the satellite's own cookie that resumes
 * after k entries (ext4's are 63-bit hashes, which a position keeps exact).
 */
interface Listing {
  cookies: bigint[];
  buffer: DirEntry[];
  /** Position of `buffer[0]`. */
  bufferStart: number;
  /** Position where the stream ends, once the satellite said so. */
  end: number | undefined;
}

/** Options of {@link ContainerFs}. Timeouts in seconds. */
export interface ContainerFsOptions {
  attrTimeout: number;
  entryTimeout: number;
  /** The host's architecture name as the protocol knows it ("x86_64", "aarch64"). */
  hostArch: string;
  /** The mount uses the kernel's writeback cache (it may READ through write-only opens). */
  writebackCache?: boolean;
  /**
   * Answer writes to regular files once queued to the satellite (default true); their errors
   * are reported by the handle's next write, flush or fsync. O_SYNC/O_DSYNC writes always wait.
   */
  writeBehind?: boolean;
  logger: Logger;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_ISGID = 0o2000;
/** d_type of a directory. */
const DT_DIR = 4;
const DT_TO_IFMT: Readonly<Record<number, number>> = {
  1: 0o010000, // DT_FIFO
  2: 0o020000, // DT_CHR
  [DT_DIR]: S_IFDIR,
  6: 0o060000, // DT_BLK
  8: S_IFREG,
  10: 0o120000, // DT_LNK
  12: 0o140000, // DT_SOCK
};
/**
 * Bytes of early-answered writes in flight per handle. The satellite serves requests in order,
 * so anything sent later (read, getattr, fsync) sees them; errors surface on the next write,
 * flush or fsync of the handle, like on NFS.
 */
const WRITE_BEHIND_BYTES = 8 << 20;
/** O_DSYNC (O_SYNC includes it): such writes are answered only once done. */
const O_DSYNC = 0o10000;
/** Nodes remembered as having no xattrs before expired ones are swept. */
const NO_XATTRS_SWEEP = 65536;
/** Entries asked of the satellite per readdir round trip. */
const READDIR_BATCH = 1024;
/** Subdirectory listings fetched ahead at once: a user's request waits behind at most these. */
const LIST_AHEAD_IN_FLIGHT = 2;
/** Subdirectories queued for listing ahead, and listings kept, at most. */
const LIST_AHEAD_QUEUE = 1024;
/** Handle id of a directory opened from a listing fetched ahead (no satellite handle). */
const NO_HANDLE = -1;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Converts the satellite's Stat to FUSE attributes. */
export function statToAttr(stat: Stat): Attr {
  return {
    ino: stat.ino,
    mode: stat.mode,
    nlink: stat.nlink,
    uid: stat.uid,
    gid: stat.gid,
    rdev: encodeDev(stat.rdevMajor, stat.rdevMinor),
    size: Number(stat.size),
    blocks: Number(stat.blocks),
    blksize: stat.blksize || 4096,
    atime: { sec: stat.atimeSec, nsec: stat.atimeNsec },
    mtime: { sec: stat.mtimeSec, nsec: stat.mtimeNsec },
    ctime: { sec: stat.ctimeSec, nsec: stat.ctimeNsec },
  };
}

function wireTime(t: Timestamp | "now" | undefined): { sec: number; nsec: number } | undefined {
  if (t === undefined) return undefined;
  return t === "now" ? { sec: 0, nsec: UTIME_NOW } : { sec: t.sec, nsec: t.nsec };
}

/** Identity of an inode: inode numbers repeat across the container's filesystems. */
function statKey(stat: Stat): string {
  return `${stat.devMajor}:${stat.devMinor}:${stat.ino}`;
}

/** Relative protocol path of a node ("" for the root), or undefined when it has none. */
function relPath(node: Node): string | undefined {
  const path = node.path;
  return path === undefined ? undefined : path.slice(1);
}

/** The FUSE filesystem of one container, served by its satellite. */
export class ContainerFs implements FileSystem<Handle> {
  readonly #rpc: RpcCalls;
  readonly #options: ContainerFsOptions;
  #warnedNames = false;
  /**
   * Node keys whose inode had no xattrs when last seen → until when (ms) that is trusted. The
   * kernel probes every file for ACLs and security.capability (ls -l, each write); inside the
   * attribute timeout those probes are answered here, like the attributes themselves.
   */
  readonly #noXattrs = new Map<string, number>();
  /**
   * Attributes of names just listed with `plus` ("parentKey/name"), for the kernel's LOOKUP of
   * them right after (rm -r, globbing, grep -r): used once, within the entry timeout.
   */
  readonly #listed = new Map<string, { stat: Stat; until: number }>();
  /** Directories' attributes as the satellite saw them right after our change in them. */
  readonly #changedDirs = new Map<string, { attr: Attr; until: number }>();
  /** Counts changes to file contents (see `#dropPrefetch`); opens compare it around their trip. */
  #changes = 0;
  /** Open file handles by identity: attributes of an unlinked file come through one of them. */
  readonly #openFiles = new Map<string, Set<Handle>>();
  /**
   * Listing ahead: right after a directory is listed, its subdirectories (same filesystem) are
   * listed in the background, so a walk (find, ls -R, grep -r, du, rm -r) finds the next listing
   * ready while the client and the satellite work in parallel. Keyed by the directory's node key;
   * every change through the mount empties it (`#forgetListed`), and a listing serves only within
   * the entry/attribute timeout from when the satellite made it, as the kernel's caches would.
   */
  readonly #ahead = new Map<string, {
    path: string;
    done?: { entries: readonly WireDirEntry[]; at: number };
    running?: Promise<void>;
  }>();
  /** Keys of `#ahead` waiting to be fetched, in order. */
  #aheadQueue: string[] = [];
  #aheadRunning = 0;
  /** Counts changes made through the mount; a listing fetched across one is not kept. */
  #mutations = 0;

  constructor(rpc: RpcCalls, options: ContainerFsOptions) {
    this.#rpc = rpc;
    this.#options = options;
  }

  /** Open flags for the satellite: with writeback caching, write-only opens become read-write. */
  #wireFlags(flags: number): number {
    const adjusted = this.#options.writebackCache && (flags & O_ACCMODE) === O_WRONLY
      ? (flags & ~O_ACCMODE) | O_RDWR
      : flags;
    return openFlagsToWire(adjusted, this.#options.hostArch);
  }

  #opts(ctx: RequestContext): CallOptions {
    return { signal: ctx.signal };
  }

  #childPath(parent: Node, name: string): string | Errno {
    const base = relPath(parent);
    if (base === undefined) return ENOENT;
    return base === "" ? name : `${base}/${name}`;
  }

  /** Keeps a directory's attributes taken right after a change in it, for the next GETATTR. */
  #noteDir(dir: Node, stat: Stat | undefined): void {
    if (stat === undefined || this.#options.attrTimeout <= 0) {
      this.#changedDirs.delete(dir.key);
      return;
    }
    if (this.#changedDirs.size >= NO_XATTRS_SWEEP) this.#changedDirs.clear();
    const until = Date.now() + this.#options.attrTimeout * 1000;
    this.#changedDirs.set(dir.key, { attr: statToAttr(stat), until });
  }

  /** Records what the satellite said about `key`'s xattrs along with its attributes. */
  #noteXattrs(key: string, stat: Stat): void {
    if (stat.hasXattrs !== false || this.#options.attrTimeout <= 0) {
      this.#noXattrs.delete(key);
      return;
    }
    const now = Date.now();
    if (this.#noXattrs.size >= NO_XATTRS_SWEEP) {
      for (const [k, until] of this.#noXattrs) if (until <= now) this.#noXattrs.delete(k);
      if (this.#noXattrs.size >= NO_XATTRS_SWEEP) this.#noXattrs.clear();
    }
    this.#noXattrs.set(key, now + this.#options.attrTimeout * 1000);
  }

  /** "yes" inside the timeout; "expired" when it was so before (worth one listxattr to renew). */
  #noXattrsState(node: Node): "yes" | "expired" | "unknown" {
    const until = this.#noXattrs.get(node.key);
    if (until === undefined) return "unknown";
    return until > Date.now() ? "yes" : "expired";
  }

  /** True when `node` has no xattrs (known, or renewed with one listxattr). */
  async #hasNoXattrs(ctx: RequestContext, node: Node, path: string): Promise<boolean> {
    const state = this.#noXattrsState(node);
    if (state !== "expired") return state === "yes";
    this.#noXattrs.delete(node.key);
    const r = await this.#rpc.listxattr({ path }, this.#opts(ctx));
    if (!r.ok || r.value.length > 0) return false;
    if (this.#options.attrTimeout > 0) {
      this.#noXattrs.set(node.key, Date.now() + this.#options.attrTimeout * 1000);
    }
    return true;
  }

  #entry(node: Node | undefined, stat: Stat): Entry {
    const attr = statToAttr(stat);
    if (node) node.data = attr;
    const key = statKey(stat);
    this.#noteXattrs(node?.key ?? key, stat);
    return {
      attr,
      key,
      entryTimeout: this.#options.entryTimeout,
      attrTimeout: this.#options.attrTimeout,
      noXattrs: stat.hasXattrs === false,
    };
  }

  /** Owner of a new inode in `parent`: the caller, with a set-group-ID directory's group. */
  #owner(ctx: RequestContext, parent: Node): { uid: number; gid: number } {
    const attr = parent.data as Attr | undefined;
    const gid = attr && (attr.mode & S_ISGID) !== 0 ? attr.gid : ctx.gid;
    return { uid: ctx.uid, gid };
  }

  #fail(result: RpcResult<unknown> & { ok: false }): Errno {
    return errnoOf(result.errno);
  }

  #forgetListed(parent: Node | undefined, name: string): void {
    this.#dropAhead();
    if (parent !== undefined && this.#listed.size > 0) this.#listed.delete(`${parent.key}/${name}`);
  }

  async lookup(ctx: RequestContext, parent: Node, name: string): Promise<Entry | Errno> {
    const path = this.#childPath(parent, name);
    if (typeof path !== "string") return path;
    const key = `${parent.key}/${name}`;
    const listed = this.#listed.get(key);
    if (listed !== undefined) {
      this.#listed.delete(key);
      if (listed.until > Date.now()) return this.#entry(undefined, listed.stat);
    }
    const r = await this.#rpc.lstat({ path }, this.#opts(ctx));
    return r.ok ? this.#entry(undefined, r.value) : this.#fail(r);
  }

  async getattr(
    ctx: RequestContext,
    node: Node,
    handle: Handle | undefined,
  ): Promise<AttrResult | Errno> {
    const changed = this.#changedDirs.get(node.key);
    if (changed !== undefined) {
      // Asked right after our own change in it (the kernel drops a directory's attributes then).
      this.#changedDirs.delete(node.key);
      if (changed.until > Date.now()) {
        node.data = changed.attr;
        return { attr: changed.attr, timeout: this.#options.attrTimeout };
      }
    }
    // An open file answers for itself, also once unlinked (fstat after unlink).
    const path = relPath(node);
    const given = handle?.id === NO_HANDLE ? undefined : handle;
    const open = given ??
      (path === undefined ? this.#openFiles.get(node.key)?.values().next().value : undefined);
    if (open === undefined && path === undefined) return ENOENT;
    const r = open !== undefined
      ? await this.#rpc.fstat({ handle: open.id }, this.#opts(ctx))
      : await this.#rpc.lstat({ path: path! }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    const attr = statToAttr(r.value);
    node.data = attr;
    this.#noteXattrs(node.key, r.value);
    return { attr, timeout: this.#options.attrTimeout, noXattrs: r.value.hasXattrs === false };
  }

  async setattr(
    ctx: RequestContext,
    node: Node,
    changes: SetAttrChanges,
    handle: Handle | undefined,
  ): Promise<AttrResult | Errno> {
    this.#forgetListed(node.parent, node.name);
    if (changes.size !== undefined) this.#dropPrefetch(node.key);
    const path = relPath(node);
    if (path === undefined) {
      // Unlinked but open: only a truncate through the handle is possible.
      if (handle && changes.size !== undefined && Object.keys(changes).length === 1) {
        const r = await this.#rpc.ftruncate(
          { handle: handle.id, size: BigInt(changes.size) },
          this.#opts(ctx),
        );
        if (!r.ok) return this.#fail(r);
        const attr = node.data as Attr | undefined;
        if (!attr) return ENOENT;
        const updated = { ...attr, size: changes.size };
        node.data = updated;
        return { attr: updated, timeout: 0 };
      }
      return ENOENT;
    }
    const r = await this.#rpc.setattr({
      path,
      handle: handle?.id,
      mode: changes.mode,
      uid: changes.uid,
      gid: changes.gid,
      size: changes.size === undefined ? undefined : BigInt(changes.size),
      atime: wireTime(changes.atime),
      mtime: wireTime(changes.mtime),
    }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    const attr = statToAttr(r.value);
    node.data = attr;
    this.#noteXattrs(node.key, r.value);
    return { attr, timeout: this.#options.attrTimeout, noXattrs: r.value.hasXattrs === false };
  }

  async readlink(ctx: RequestContext, node: Node): Promise<string | Errno> {
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    const r = await this.#rpc.readlink({ path }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    if (typeof r.value === "string") return r.value;
    try {
      return decoder.decode(r.value);
    } catch {
      return EINVAL; // a target that is not UTF-8 cannot be shown faithfully
    }
  }

  async symlink(
    ctx: RequestContext,
    parent: Node,
    name: string,
    target: string,
  ): Promise<Entry | Errno> {
    const path = this.#childPath(parent, name);
    this.#forgetListed(parent, name);
    if (typeof path !== "string") return path;
    const r = await this.#rpc.symlink(
      { path, target, owner: this.#owner(ctx, parent) },
      this.#opts(ctx),
    );
    return r.ok ? this.#entry(undefined, r.value) : this.#fail(r);
  }

  async mknod(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    rdev: number,
  ): Promise<Entry | Errno> {
    const path = this.#childPath(parent, name);
    this.#forgetListed(parent, name);
    if (typeof path !== "string") return path;
    const { major, minor } = decodeDev(rdev);
    const r = await this.#rpc.mknod(
      { path, mode, rdevMajor: major, rdevMinor: minor, owner: this.#owner(ctx, parent) },
      this.#opts(ctx),
    );
    return r.ok ? this.#entry(undefined, r.value) : this.#fail(r);
  }

  async mkdir(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
  ): Promise<Entry | Errno> {
    const path = this.#childPath(parent, name);
    this.#forgetListed(parent, name);
    if (typeof path !== "string") return path;
    const parentAttr = parent.data as Attr | undefined;
    // A directory made in a set-group-ID directory inherits the bit, as on ext4.
    const inherited = parentAttr && (parentAttr.mode & S_ISGID) !== 0 ? S_ISGID : 0;
    const r = await this.#rpc.mkdir(
      { path, mode: mode | inherited, owner: this.#owner(ctx, parent) },
      this.#opts(ctx),
    );
    return r.ok ? this.#entry(undefined, r.value) : this.#fail(r);
  }

  async unlink(ctx: RequestContext, parent: Node, name: string): Promise<void | Errno> {
    const path = this.#childPath(parent, name);
    this.#forgetListed(parent, name);
    if (typeof path !== "string") return path;
    const r = await this.#rpc.unlink({ path }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    this.#noteDir(parent, r.value?.dir);
  }

  async rmdir(ctx: RequestContext, parent: Node, name: string): Promise<void | Errno> {
    const path = this.#childPath(parent, name);
    this.#forgetListed(parent, name);
    if (typeof path !== "string") return path;
    const r = await this.#rpc.rmdir({ path }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    this.#noteDir(parent, r.value?.dir);
  }

  async rename(
    ctx: RequestContext,
    parent: Node,
    name: string,
    newParent: Node,
    newName: string,
    flags: number,
  ): Promise<void | Errno> {
    const from = this.#childPath(parent, name);
    this.#forgetListed(parent, name);
    this.#forgetListed(newParent, newName);
    if (typeof from !== "string") return from;
    const to = this.#childPath(newParent, newName);
    if (typeof to !== "string") return to;
    const r = await this.#rpc.rename({ from, to, flags }, this.#opts(ctx));
    return r.ok ? undefined : this.#fail(r);
  }

  async link(
    ctx: RequestContext,
    node: Node,
    newParent: Node,
    newName: string,
  ): Promise<Entry | Errno> {
    const from = relPath(node);
    if (from === undefined) return ENOENT;
    const to = this.#childPath(newParent, newName);
    this.#forgetListed(newParent, newName);
    if (typeof to !== "string") return to;
    const r = await this.#rpc.link({ from, to }, this.#opts(ctx));
    return r.ok ? this.#entry(node, r.value) : this.#fail(r);
  }

  /** Page cache policy: files that report size 0 (procfs, sysfs…) are read directly. */
  #opened(node: Node, id: number): Opened<Handle> {
    const attr = node.data as Attr | undefined;
    const special = attr !== undefined && (attr.mode & S_IFMT) === S_IFREG && attr.size === 0;
    const handle = this.#track(id, node.key, !special);
    return { handle, directIo: special, keepCache: !special };
  }

  #track(id: number, key: string, writeBehind: boolean): Handle {
    const handle: Handle = {
      id,
      dir: false,
      key,
      writeBehind: writeBehind && this.#options.writeBehind !== false,
    };
    const set = this.#openFiles.get(key) ?? new Set();
    set.add(handle);
    this.#openFiles.set(key, set);
    return handle;
  }

  #untrack(handle: Handle): void {
    const set = this.#openFiles.get(handle.key);
    set?.delete(handle);
    if (set?.size === 0) this.#openFiles.delete(handle.key);
  }

  async open(ctx: RequestContext, node: Node, flags: number): Promise<Opened<Handle> | Errno> {
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    // Read-only opens fetch the first bytes in the same round trip: a small file is then read
    // without another one (the satellite only reads regular files with a size).
    const readAhead = (flags & O_ACCMODE) === O_RDONLY && (flags & O_TRUNC) === 0 &&
        this.#options.attrTimeout > 0
      ? MAX_OPEN_READ_AHEAD
      : undefined;
    const changesBefore = this.#changes;
    const r = await this.#rpc.open(
      { path, flags: this.#wireFlags(flags), readAhead },
      this.#opts(ctx),
    );
    if (!r.ok) return this.#fail(r);
    const opened = this.#opened(node, r.value.handle);
    const data = r.value.data;
    // A file changed while the open was under way may have been read before the change: such
    // read-ahead would put old bytes into the kernel's page cache.
    if (data !== undefined && !opened.directIo && this.#changes === changesBefore) {
      opened.handle.prefetch = data;
      opened.handle.prefetchEof = data.length < MAX_OPEN_READ_AHEAD;
      opened.handle.prefetchUntil = Date.now() + this.#options.attrTimeout * 1000;
    }
    return opened;
  }

  /** Forgets read-ahead data of every handle open on `key` (the file is being changed). */
  #dropPrefetch(key: string): void {
    this.#changes++;
    for (const h of this.#openFiles.get(key) ?? []) h.prefetch = undefined;
  }

  async create(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    flags: number,
  ): Promise<Created<Handle> | Errno> {
    const path = this.#childPath(parent, name);
    this.#forgetListed(parent, name);
    if (typeof path !== "string") return path;
    const r = await this.#rpc.create({
      path,
      flags: this.#wireFlags(flags),
      mode,
      owner: this.#owner(ctx, parent),
    }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    this.#noteDir(parent, r.value.dir);
    return {
      handle: this.#track(r.value.handle, statKey(r.value.stat), true),
      entry: this.#entry(undefined, r.value.stat),
    };
  }

  async read(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    offset: number,
    size: number,
  ): Promise<Uint8Array | Errno> {
    const pre = handle.prefetch;
    if (pre !== undefined) {
      if (handle.prefetchUntil! < Date.now()) handle.prefetch = undefined;
      else if (offset + size <= pre.length || (handle.prefetchEof && offset <= pre.length)) {
        return pre.subarray(offset, Math.min(offset + size, pre.length));
      }
    }
    const r = await this.#rpc.read(
      { handle: handle.id, offset: BigInt(offset), size: Math.min(size, MAX_IO_BYTES) },
      this.#opts(ctx),
    );
    return r.ok ? r.value : this.#fail(r);
  }

  async write(
    ctx: RequestContext,
    node: Node,
    handle: Handle,
    offset: number,
    data: Uint8Array,
    info: WriteInfo,
  ): Promise<number | Errno> {
    if (handle.writeError !== undefined) return this.#takeWriteError(handle)!;
    handle.dirty = true;
    this.#dropPrefetch(handle.key);
    this.#forgetListed(node.parent, node.name);
    const params = { handle: handle.id, offset: BigInt(offset), data };
    if (!handle.writeBehind || (info.flags & O_DSYNC) !== 0) {
      const r = await this.#rpc.write(params, this.#opts(ctx));
      return r.ok ? r.value : this.#fail(r);
    }
    // The frame (a copy of `data`) is queued before this returns: the kernel may reuse `data`.
    const length = data.length;
    const sent = this.#rpc.write(params);
    const pending = handle.pending ??= new Set();
    const done: Promise<void> = sent.then((r) => {
      pending.delete(done);
      handle.pendingBytes! -= length;
      if (handle.writeError !== undefined) return;
      if (!r.ok) handle.writeError = this.#fail(r);
      else if (r.value !== length) handle.writeError = EIO; // short write: the rest is lost
    });
    pending.add(done);
    handle.pendingBytes = (handle.pendingBytes ?? 0) + length;
    while (handle.pendingBytes > WRITE_BEHIND_BYTES && pending.size > 1) {
      await pending.values().next().value;
    }
    return length;
  }

  /** Waits for the handle's early-answered writes. */
  async #settleWrites(handle: Handle): Promise<void> {
    while (handle.pending !== undefined && handle.pending.size > 0) {
      await Promise.all([...handle.pending]);
    }
  }

  #takeWriteError(handle: Handle): Errno | undefined {
    const e = handle.writeError;
    handle.writeError = undefined;
    return e;
  }

  async flush(ctx: RequestContext, _node: Node, handle: Handle): Promise<void | Errno> {
    // close(dup(fd)) only reports deferred write errors: nothing to ask after no writes.
    if (!handle.dirty) {
      await this.#settleWrites(handle);
      return this.#takeWriteError(handle);
    }
    handle.dirty = false;
    // Sent behind the pending writes (served in order): one round trip for both.
    const flushed = this.#rpc.flush({ handle: handle.id }, this.#opts(ctx));
    await this.#settleWrites(handle);
    const r = await flushed;
    const error = this.#takeWriteError(handle);
    if (error !== undefined) return error;
    return r.ok ? undefined : this.#fail(r);
  }

  async release(
    _ctx: RequestContext,
    _node: Node,
    handle: Handle,
    _info: ReleaseInfo,
  ): Promise<void | Errno> {
    // Not cancellable: the satellite's handle must be closed whatever the caller does.
    this.#untrack(handle);
    await this.#settleWrites(handle);
    const r = await this.#rpc.release({ handle: handle.id });
    return r.ok ? undefined : this.#fail(r);
  }

  async fsync(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    datasync: boolean,
  ): Promise<void | Errno> {
    // Sent behind the pending writes (served in order): one round trip for both.
    const synced = this.#rpc.fsync({ handle: handle.id, datasync }, this.#opts(ctx));
    await this.#settleWrites(handle);
    const r = await synced;
    const error = this.#takeWriteError(handle);
    if (error !== undefined) return error;
    return r.ok ? undefined : this.#fail(r);
  }

  async fallocate(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    offset: number,
    length: number,
    mode: number,
  ): Promise<void | Errno> {
    this.#dropPrefetch(handle.key);
    this.#forgetListed(_node.parent, _node.name);
    const r = await this.#rpc.fallocate(
      { handle: handle.id, mode, offset: BigInt(offset), length: BigInt(length) },
      this.#opts(ctx),
    );
    return r.ok ? undefined : this.#fail(r);
  }

  async lseek(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    offset: number,
    whence: number,
  ): Promise<number | Errno> {
    const r = await this.#rpc.lseek(
      { handle: handle.id, offset: BigInt(offset), whence },
      this.#opts(ctx),
    );
    return r.ok ? Number(r.value) : this.#fail(r);
  }

  async copyFileRange(
    ctx: RequestContext,
    _nodeIn: Node,
    handleIn: Handle,
    offsetIn: number,
    _nodeOut: Node,
    handleOut: Handle,
    offsetOut: number,
    length: number,
    flags: number,
  ): Promise<number | Errno> {
    this.#dropPrefetch(handleOut.key);
    const r = await this.#rpc.copyFileRange({
      handleIn: handleIn.id,
      offsetIn: BigInt(offsetIn),
      handleOut: handleOut.id,
      offsetOut: BigInt(offsetOut),
      length: BigInt(length),
      flags,
    }, this.#opts(ctx));
    return r.ok ? Number(r.value) : this.#fail(r);
  }

  async opendir(ctx: RequestContext, node: Node): Promise<Opened<Handle> | Errno> {
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    const ahead = await this.#takeAhead(node.key);
    if (ahead !== undefined) {
      const listing: Listing = { cookies: [0n], buffer: [], bufferStart: 0, end: undefined };
      this.#fillListing(node, listing, 0, ahead.entries, true, true, ahead.at);
      this.#listAhead(node, path, ahead.entries);
      return { handle: { id: NO_HANDLE, dir: true, key: "", listing } };
    }
    // The first batch comes along (with attributes): a listing costs one round trip.
    const r = await this.#rpc.opendir({ path, readAhead: READDIR_BATCH }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    const handle: Handle = { id: r.value.handle, dir: true, key: "" };
    const { entries, eof } = r.value;
    if (entries !== undefined) {
      const listing: Listing = { cookies: [0n], buffer: [], bufferStart: 0, end: undefined };
      if (this.#fillListing(node, listing, 0, entries, eof === true, true)) {
        handle.listing = listing;
      }
      if (eof === true) this.#listAhead(node, path, entries);
    }
    return { handle };
  }

  /** Milliseconds what a listing told may serve (`#listed`, listing ahead); 0: not at all. */
  #listedTtlMs(): number {
    return Math.min(this.#options.entryTimeout, this.#options.attrTimeout) * 1000;
  }

  /** Queues the subdirectories among `entries` of `dir` (on its filesystem) for listing ahead. */
  #listAhead(dir: Node, path: string, entries: readonly WireDirEntry[]): void {
    if (this.#listedTtlMs() <= 0) return;
    const dev = dir.key.slice(0, dir.key.lastIndexOf(":") + 1);
    for (const e of entries) {
      if (e.type !== DT_DIR || typeof e.name !== "string" || e.stat === undefined) continue;
      if (e.name === "." || e.name === "..") continue;
      const key = statKey(e.stat);
      // Mount points (/proc, /sys, volumes) are not walked into ahead of time.
      if (!key.startsWith(dev) || this.#ahead.has(key)) continue;
      if (this.#ahead.size >= LIST_AHEAD_QUEUE) break;
      this.#ahead.set(key, { path: path === "" ? e.name : `${path}/${e.name}` });
      this.#aheadQueue.push(key);
    }
    this.#pumpAhead();
  }

  #pumpAhead(): void {
    while (this.#aheadRunning < LIST_AHEAD_IN_FLIGHT && this.#aheadQueue.length > 0) {
      const key = this.#aheadQueue.shift()!;
      const slot = this.#ahead.get(key);
      if (slot === undefined || slot.done !== undefined || slot.running !== undefined) continue;
      this.#aheadRunning++;
      slot.running = this.#fetchAhead(key, slot.path).finally(() => {
        this.#aheadRunning--;
        slot.running = undefined;
        this.#pumpAhead();
      });
    }
  }

  async #fetchAhead(key: string, path: string): Promise<void> {
    const mutations = this.#mutations;
    const r = await this.#rpc.opendir({ path, readAhead: READDIR_BATCH });
    if (!r.ok) {
      this.#ahead.delete(key);
      return;
    }
    this.#rpc.release({ handle: r.value.handle }).catch(() => {});
    const slot = this.#ahead.get(key);
    // Kept only when whole and nothing changed through the mount meanwhile.
    if (
      slot === undefined || r.value.eof !== true || r.value.entries === undefined ||
      this.#mutations !== mutations
    ) {
      this.#ahead.delete(key);
      return;
    }
    slot.done = { entries: r.value.entries, at: Date.now() };
  }

  /** A listing of `key` fetched ahead and still fresh (waiting for it if under way). */
  async #takeAhead(
    key: string,
  ): Promise<{ entries: readonly WireDirEntry[]; at: number } | undefined> {
    const slot = this.#ahead.get(key);
    if (slot === undefined) return undefined;
    if (slot.running !== undefined) await slot.running;
    this.#ahead.delete(key);
    if (slot.done === undefined || Date.now() - slot.done.at >= this.#listedTtlMs()) {
      return undefined;
    }
    return slot.done;
  }

  /** Forgets every listing fetched or queued ahead (something changed through the mount). */
  #dropAhead(): void {
    this.#mutations++;
    if (this.#ahead.size === 0) return;
    this.#ahead.clear();
    this.#aheadQueue = [];
  }

  /**
   * Makes `entries` (read from position `offset`) the listing's buffer. False when none of them
   * can be shown (names that are not UTF-8) and the stream goes on: the caller reads further.
   */
  #fillListing(
    dir: Node,
    listing: Listing,
    offset: number,
    entries: readonly WireDirEntry[],
    eof: boolean,
    plus: boolean,
    fetchedAt: number = Date.now(),
  ): boolean {
    const buffer: DirEntry[] = [];
    const ttl = this.#listedTtlMs();
    const until = fetchedAt + ttl;
    if (this.#listed.size > NO_XATTRS_SWEEP) this.#listed.clear();
    for (const e of entries) {
      if (typeof e.name !== "string") {
        // Names that are not UTF-8 cannot be looked up through the kernel's strings here.
        if (!this.#warnedNames) {
          this.#warnedNames = true;
          this.#options.logger.warn("skipping directory entries whose names are not UTF-8");
        }
        continue;
      }
      const next = offset + buffer.length + 1;
      listing.cookies[next] = e.offset;
      if (e.stat !== undefined && ttl > 0 && e.name !== "." && e.name !== "..") {
        this.#listed.set(`${dir.key}/${e.name}`, { stat: e.stat, until });
      }
      buffer.push({
        name: e.name,
        ino: e.ino,
        mode: DT_TO_IFMT[e.type] ?? 0,
        next,
        entry: plus && e.stat ? this.#entry(undefined, e.stat) : undefined,
      });
    }
    if (buffer.length === 0 && !eof) return false;
    listing.buffer = buffer;
    listing.bufferStart = offset;
    if (eof) listing.end = offset + buffer.length;
    return true;
  }

  async readdir(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    offset: number,
    plus: boolean,
  ): Promise<DirEntry[] | Errno> {
    const listing = handle.listing ??= {
      cookies: [0n],
      buffer: [],
      bufferStart: 0,
      end: undefined,
    };
    if (listing.end !== undefined && offset >= listing.end) return [];
    const index = offset - listing.bufferStart;
    if (index >= 0 && index < listing.buffer.length) return listing.buffer.slice(index);
    const cookie = listing.cookies[offset];
    if (cookie === undefined) return EINVAL; // not a position this stream produced
    const r = await this.#rpc.readdir(
      { handle: handle.id, offset: cookie, plus, maxEntries: READDIR_BATCH },
      this.#opts(ctx),
    );
    if (!r.ok) return this.#fail(r);
    if (!this.#fillListing(_node, listing, offset, r.value.entries, r.value.eof, plus)) {
      // Only undecodable names in this batch: continue after them.
      const last = r.value.entries.at(-1);
      if (last === undefined) return [];
      listing.cookies[offset] = last.offset;
      return await this.readdir(ctx, _node, handle, offset, plus);
    }
    return listing.buffer;
  }

  async releasedir(_ctx: RequestContext, _node: Node, handle: Handle): Promise<void | Errno> {
    if (handle.id === NO_HANDLE) return;
    const r = await this.#rpc.release({ handle: handle.id });
    return r.ok ? undefined : this.#fail(r);
  }

  async fsyncdir(
    ctx: RequestContext,
    node: Node,
    handle: Handle,
    datasync: boolean,
  ): Promise<void | Errno> {
    if (handle.id !== NO_HANDLE) {
      const r = await this.#rpc.fsync({ handle: handle.id, datasync }, this.#opts(ctx));
      return r.ok ? undefined : this.#fail(r);
    }
    // Opened from a listing fetched ahead: sync through a handle of its own.
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    const opened = await this.#rpc.opendir({ path }, this.#opts(ctx));
    if (!opened.ok) return this.#fail(opened);
    const r = await this.#rpc.fsync({ handle: opened.value.handle, datasync }, this.#opts(ctx));
    this.#rpc.release({ handle: opened.value.handle }).catch(() => {});
    return r.ok ? undefined : this.#fail(r);
  }

  async statfs(ctx: RequestContext): Promise<StatFs | Errno> {
    const r = await this.#rpc.statfs({ path: "" }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    const s = r.value;
    return {
      blocks: Number(s.blocks),
      bfree: Number(s.bfree),
      bavail: Number(s.bavail),
      files: Number(s.files),
      ffree: Number(s.ffree),
      bsize: s.bsize,
      namelen: s.namemax,
      frsize: s.frsize,
    };
  }

  async setxattr(
    ctx: RequestContext,
    node: Node,
    name: string,
    value: Uint8Array,
    flags: number,
  ): Promise<void | Errno> {
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    this.#noXattrs.delete(node.key);
    this.#forgetListed(node.parent, node.name);
    const r = await this.#rpc.setxattr({ path, name, value, flags }, this.#opts(ctx));
    return r.ok ? undefined : this.#fail(r);
  }

  async getxattr(ctx: RequestContext, node: Node, name: string): Promise<Uint8Array | Errno> {
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    if (await this.#hasNoXattrs(ctx, node, path)) return ENODATA;
    const r = await this.#rpc.getxattr({ path, name }, this.#opts(ctx));
    return r.ok ? r.value : this.#fail(r);
  }

  async listxattr(ctx: RequestContext, node: Node): Promise<string[] | Errno> {
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    if (this.#noXattrsState(node) === "yes") return [];
    const r = await this.#rpc.listxattr({ path }, this.#opts(ctx));
    if (!r.ok) return this.#fail(r);
    return r.value.filter((n): n is string => typeof n === "string");
  }

  async removexattr(ctx: RequestContext, node: Node, name: string): Promise<void | Errno> {
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    this.#noXattrs.delete(node.key);
    this.#forgetListed(node.parent, node.name);
    const r = await this.#rpc.removexattr({ path, name }, this.#opts(ctx));
    return r.ok ? undefined : this.#fail(r);
  }
}
