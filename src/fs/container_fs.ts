/**
 * The container filesystem: the FUSE layer's `FileSystem` mapped onto satellite RPCs.
 *
 * This class is the mapping; what it remembers between calls lives in named parts:
 * `AttrCache` (node attributes, "no xattrs", listed names, changed directories), `SubtreeAhead`
 * (subtrees walked in the background, symlink targets included), `WriteBehind` (early-answered writes and their
 * errors), `OpenFiles` (open handles by inode and their open's read-ahead), `DirListing` (one
 * open directory's stream) and `MountChanges` (the one count of changes made through the
 * mount).
 *
 * Invariants:
 * - Every operation names its object by the node's current path (kept by the FUSE layer), made
 *   relative to the satellite's root ("" is the root). A node without a path (unlinked) is only
 *   reachable through an open handle.
 * - Failures are errno values; an RPC failure's errno passes through unchanged, so the container's
 *   own answer (ENOSPC, EROFS, EACCES…) reaches the caller.
 * - The satellite is untrusted: names, attributes and counts it answers are checked before they
 *   reach the kernel (`checks.ts`); what fails the checks is dropped or answered EIO, and logged.
 * - New inodes are owned by the calling uid/gid (the gid of a set-group-ID parent directory wins,
 *   as on ext4).
 * - Attributes told to the kernel for an inode by any answer (LOOKUP, READDIRPLUS and CREATE
 *   included) are kept by `AttrCache`: they decide set-group-ID inheritance and the page-cache
 *   policy of an open. A parent whose attributes are not known is asked for them first.
 * - An operation holding a satellite descriptor in its answer (open, opendir) is never cancelled
 *   mid-way: an interrupted one answers EINTR and releases the descriptor when it arrives.
 *
 * @module
 */

import {
  abi,
  Absent,
  type Attr,
  type AttrResult,
  type Created,
  type DirChanged,
  type DirEntry,
  EINTR,
  EINVAL,
  EIO,
  ENAMETOOLONG,
  ENODATA,
  ENOENT,
  type Entry,
  type Errno,
  errnoOf,
  ESTALE,
  type FileSystem,
  isErrno,
  type Logger,
  type Node,
  type Opened,
  type ReleaseInfo,
  type RequestContext,
  type SetAttrChanges,
  type StatFs,
  type Timestamp,
  type WriteInfo,
} from "../fuse/mod.ts";
import {
  O_ACCMODE,
  O_CREAT,
  O_DSYNC,
  O_EXCL,
  O_RDONLY,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  S_IFDIR,
  S_IFMT,
  S_IFREG,
  S_ISGID,
  S_ISUID,
  S_IXGRP,
} from "../linux/mod.ts";
import {
  type CallOptions,
  type Change,
  decodeDev,
  type DirEntry as WireDirEntry,
  MAX_IO_BYTES,
  MAX_OPEN_READ_AHEAD,
  MAX_PATH_BYTES,
  MAX_READ_FILES,
  MAX_READ_FILES_BYTES,
  OpenFlags,
  openFlagsToWire,
  type RpcCalls,
  type RpcResult,
  type Stat,
  UTIME_NOW,
  type WholeFile,
} from "../protocol/mod.ts";
import { AttrCache } from "./attr_cache.ts";
import { BoundedMap } from "./bounded_map.ts";
import { statKey, statProblem, statToAttr, targetProblem } from "./checks.ts";
import { DirListing, type ShownEntry } from "./dir_listing.ts";
import { type KernelCaches, LiveView, type Timeouts, xattrsMayChange } from "./live.ts";
import { NodeHandles, type Where } from "./node_handles.ts";
import { SubtreeAhead, type WalkedListing } from "./subtree.ts";
import { MountChanges } from "./mount_changes.ts";
import { OpenFiles, type ReadAhead } from "./open_files.ts";
import { SmallFiles } from "./small_files.ts";
import { fixedLink, isLink, type RpcLink } from "./rpc_link.ts";
import { FileWrites, WRITE_AHEAD_BYTES, WriteBehind } from "./write_behind.ts";

/** An open file or directory: the satellite's handle id. */
export interface Handle {
  /** The satellite's handle id; `NO_HANDLE` for a directory opened from a listing ahead. */
  id: number;
  /** The connection (`RpcLink.generation`) `id` belongs to. */
  gen: number;
  /** Host open flags to open the same file again after a reconnect (files only). */
  readonly reopenFlags?: number;
  /** Set once the handle cannot be reopened after a reconnect: every call answers it. */
  lost?: Errno;
  /** A reopen under way. */
  reopening?: Promise<Errno | undefined>;
  readonly dir: boolean;
  /** Identity (`Entry.key`) of the open file or directory. */
  readonly key: string;
  /** The directory's stream (dirs only). */
  listing?: DirListing;
  /** Write state (files only). */
  readonly writes?: FileWrites;
  /**
   * The file's close reports nothing its writes did not (the satellite's `quietClose`): a flush
   * waits for the writes and asks the satellite nothing.
   */
  quietClose?: boolean;
  /** Read-ahead of the open (files only; see `OpenFiles`). */
  readAhead?: ReadAhead;
  /**
   * A directory opened without a satellite handle because the kernel keeps its listing (the
   * change feed vouches for it): opened for real at the first readdir the cache cannot answer.
   */
  lazy?: boolean;
}

/**
 * An entry as this filesystem answers it: what `entered` keeps of it when the kernel is told,
 * besides its attributes.
 */
interface FsEntry extends Entry {
  /** Whether the inode has xattrs, when the satellite probed. */
  hasXattrs: boolean | undefined;
  /** With the change feed's long timeout: the event its attributes were read after. */
  longSince: number | undefined;
  /** Changes through the mount counted when it was made. */
  changes: number;
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
   * The change feed (see live.ts): the satellite watches what the kernel caches and the kernel
   * is told of changes; names and attributes it vouches for are cached `timeout` seconds.
   * Absent: no feed (the timeouts above everywhere).
   */
  live?: { timeout: number; maxWatches: number; debug?: boolean };
  /**
   * Answer writes to regular files once queued to the satellite (default true); their errors
   * are reported by the handle's next write, flush or fsync. O_SYNC/O_DSYNC writes always wait.
   */
  writeBehind?: boolean;
  /**
   * How long (ms) the satellite may work on one answer of a walk ahead (see subtree.ts): set
   * for a satellite near, where the requests read behind a walk would wait for it. Default none.
   */
  walkSliceMs?: number;
  logger: Logger;
}

/** How the kernel may cache a directory's listing (open flags). */
type DirCache = { cacheDir?: boolean; keepCache?: boolean; reuse?: number };

/** Entries asked of the satellite per readdir round trip. */
const READDIR_BATCH = 1024;
/**
 * Largest file whose contents are read ahead of its open (see small_files.ts): most source files,
 * documents and configuration files; larger ones gain little from saving one round trip.
 */
const SMALL_FILE_BYTES = 64 * 1024;
/** Small files are read ahead only when nothing changed through the mount for this long (ms). */
const SMALL_FILES_QUIET_MS = 1000;
/** Batches of only unshowable names read in a row before a listing is given up (EIO). */
const MAX_SKIPPED_BATCHES = 1024;
/** Nodes remembered for revalidation after a reconnect. */
const SEEN_LIMIT = 4096;
/** Handle id of a directory opened from a listing fetched ahead (no satellite handle). */
const NO_HANDLE = -1;
/**
 * LOOKUPs of names of one directory missing from every listing, within `LOOKUP_MISS_MS` of each
 * other, after which the directory is listed rather than each name stat-ed (`git status` stats
 * every file of the index before it reads a directory: 2,500 lstat round trips on a cold mount
 * of a 5,000-entry repository). One miss is a path being walked through: no listing.
 */
const LOOKUP_MISSES_TO_LIST = 2;
const LOOKUP_MISS_MS = 1000;
/**
 * Names a listing may hold per LOOKUP miss it saves: a directory listed for LOOKUPs again within
 * `LOOKUP_MISS_MS` (its last listing dropped by a change through the mount before it answered
 * them) is listed once its misses reach its last listing's names / this. A LOOKUP round trip
 * costs about as much as listing this many names, so a directory changed between LOOKUPs (an
 * `rm` of names the kernel forgot) costs about a round trip per LOOKUP, not a listing per two.
 */
const LISTED_NAMES_PER_MISS = 8;
/** Directories whose LOOKUP misses are counted at most. */
const LOOKUP_MISS_DIRS = 256;
/** The signal of work done for several requests: never aborted. */
const UNINTERRUPTED = new AbortController().signal;
const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function wireTime(t: Timestamp | "now" | undefined): { sec: number; nsec: number } | undefined {
  if (t === undefined) return undefined;
  return t === "now" ? { sec: 0, nsec: UTIME_NOW } : { sec: t.sec, nsec: t.nsec };
}

/** Whether a protocol path is longer than the satellite takes (a UTF-16 unit: 1 to 3 bytes). */
function pathTooLong(path: string): boolean {
  return path.length > MAX_PATH_BYTES ||
    (path.length * 3 > MAX_PATH_BYTES && encoder.encode(path).length > MAX_PATH_BYTES);
}

/** `entries` with what READDIRPLUS tells of them cached for the one call (timeouts 0). */
function expired(entries: DirEntry[]): DirEntry[] {
  return entries.map((e) =>
    e.entry === undefined ? e : {
      ...e,
      entry: { ...e.entry, entryTimeout: 0, attrTimeout: 0, stable: false, noXattrs: false },
    }
  );
}

/** Relative protocol path of a node ("" for the root), or undefined when it has none. */
function relPath(node: Node): string | undefined {
  const path = node.path;
  return path === undefined ? undefined : path.slice(1);
}

/** Writes through `writes` (of a file opened with `flags`) are answered once queued. */
function writesBehind(writes: FileWrites | undefined, flags: number): boolean {
  return writes?.early === true && (flags & O_DSYNC) === 0;
}

/** What the kernel may be answered ahead of writes through `handle` (see write_behind.ts). */
function writeAhead(handle: Handle, flags: number): number | undefined {
  const writable = (flags & O_ACCMODE) !== O_RDONLY;
  return writable && writesBehind(handle.writes, flags) ? WRITE_AHEAD_BYTES : undefined;
}

function fail(result: RpcResult<unknown> & { ok: false }): Errno {
  return errnoOf(result.errno);
}

/** Operations that change names in a directory. */
const NAMESPACE_CHANGES = [
  "create",
  "mknod",
  "mkdir",
  "symlink",
  "link",
  "unlink",
  "rmdir",
  "rename",
] as const;

/** The FUSE filesystem of one container, served by its satellite. */
export class ContainerFs implements FileSystem<Handle> {
  /** Path-named calls (they may wait for a reconnection). */
  readonly #rpc: RpcCalls;
  readonly #link: RpcLink;
  readonly #options: ContainerFsOptions;
  readonly #attrs: AttrCache;
  readonly #changes = new MountChanges();
  readonly #ahead: SubtreeAhead;
  readonly #writes: WriteBehind;
  readonly #openFiles: OpenFiles<Handle>;
  /** Nodes the kernel used lately, oldest first (revalidated after a reconnect). */
  readonly #seen = new Set<Node>();
  /** Topics already logged (each kind of bad answer is logged once per mount). */
  readonly #warned = new Set<string>();
  /** The change feed's view, when the feed is on. */
  readonly #live: LiveView | undefined;
  /** Attributes asked after a quiet close, by inode key, until they come (`#attrsAfterClose`). */
  readonly #attrsComing = new Map<string, Promise<void>>();
  /** Per directory: LOOKUP misses in a row, the last one's time, its last listing's names. */
  readonly #lookupMisses = new BoundedMap<string, { count: number; at: number; listed: number }>(
    LOOKUP_MISS_DIRS,
  );
  /** Listings made for LOOKUPs, by directory key, while they are in flight. */
  readonly #listingForLookups = new Map<string, Promise<void>>();
  /** Small files read ahead of their opens (see small_files.ts). */
  readonly #smallFiles: SmallFiles;
  /** The satellite's node handles of directories the kernel knows. */
  readonly #nodes: NodeHandles;
  /** When (ms) something last changed through the mount. */
  #changedAt = 0;
  /** The kernel's caches, once mounted. */
  #kernel: KernelCaches | undefined;

  /** `rpc`: plain calls (one connection for life) or a link whose connection can change. */
  constructor(rpc: RpcCalls | RpcLink, options: ContainerFsOptions) {
    this.#link = isLink(rpc) ? rpc : fixedLink(rpc);
    rpc = this.#link.call;
    this.#rpc = rpc;
    this.#options = options;
    const attrTtlMs = options.attrTimeout * 1000;
    const listedTtlMs = Math.min(options.entryTimeout, options.attrTimeout) * 1000;
    this.#attrs = new AttrCache({
      attrTtlMs,
      listedTtlMs,
      vouched: (key) => this.#live?.watches(key) ?? false,
    });
    this.#smallFiles = new SmallFiles({
      ttlMs: listedTtlMs,
      watched: (key) => this.#live?.watches(key) ?? false,
    });
    const link = this.#link;
    this.#ahead = new SubtreeAhead(() => link.on(link.generation), this.#changes, {
      ttlMs: listedTtlMs,
      vouched: (key) => this.#live?.watches(key) ?? false,
      sliceMs: options.walkSliceMs,
    });
    this.#writes = new WriteBehind(rpc, { logger: options.logger });
    this.#nodes = new NodeHandles({
      get generation(): number {
        return link.generation;
      },
      forget: (gen, nodes) => {
        if (gen === link.generation && link.up) void link.on(gen).forget({ nodes });
      },
    });
    this.#openFiles = new OpenFiles(this.#changes, { ttlMs: attrTtlMs });
    this.#live = options.live === undefined ? undefined : new LiveView({
      longTimeout: options.live.timeout,
      entryTimeout: options.entryTimeout,
      attrTimeout: options.attrTimeout,
      unwatch: (dirs) => void this.#rpc.unwatch({ dirs }),
      local: {
        dropped: (dirKey, name, child, what) => {
          this.#changes.note();
          this.#ahead.drop();
          this.#smallFiles.dropDir(dirKey, child?.key);
          this.#attrs.forgetComplete(dirKey);
          this.#attrs.forgetChanged(dirKey);
          if (name !== undefined) this.#attrs.forgetListed(dirKey, name);
          if (child !== undefined) {
            this.#openFiles.changed(child.key);
            // A change of contents alone (a write, the mount's own told back) keeps "no xattrs".
            if (xattrsMayChange(what)) this.#attrs.forgetXattrs(child);
          }
        },
        droppedAll: () => {
          this.#changes.note();
          this.#ahead.drop();
          this.#smallFiles.clear();
          this.#attrs.clear();
        },
      },
      logger: options.logger,
      debug: options.live.debug,
    });
    // Namespace changes are pending from their start to their answer (see MountChanges.mark).
    for (const method of NAMESPACE_CHANGES) {
      const op = this[method].bind(this) as (...args: unknown[]) => Promise<unknown>;
      const changes = this.#changes;
      (this as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
        changes.begin();
        try {
          return await op(...args);
        } finally {
          changes.end();
        }
      };
    }
  }

  /**
   * The kernel's caches (the FUSE session, once mounted): with the change feed on, starts it;
   * the satellite's events (`onChanges`) then drop what they concern.
   */
  attachKernel(kernel: KernelCaches): void {
    this.#kernel = kernel;
    if (this.#live === undefined) return;
    this.#live.attach(kernel);
    void this.#startFeed();
  }

  /** The satellite's change feed events (in order with its answers). */
  onChanges(changes: readonly Change[]): void {
    this.#live?.onChanges(changes);
  }

  async #startFeed(): Promise<void> {
    const live = this.#live!;
    const r = await this.#rpc.watch({ maxWatches: this.#options.live!.maxWatches });
    if (r.ok) {
      live.started(r.value.root);
      this.#options.logger.debug(`live: change feed started (root ${r.value.root ?? "unwatched"})`);
    } else {
      this.#warnOnce("feed", `No change feed from the satellite: ${r.message} (short timeouts)`);
    }
  }

  #warnOnce(topic: string, message: string): void {
    if (this.#warned.has(topic)) return;
    this.#warned.add(topic);
    this.#options.logger.warn(message);
  }

  /**
   * Open flags for the satellite: with writeback caching, write-only opens become read-write;
   * O_DIRECT is dropped (the kernel already bypassed its cache, and the satellite's buffers
   * are not aligned as the container's filesystem would require).
   */
  #wireFlags(flags: number): number {
    const adjusted = this.#options.writebackCache && (flags & O_ACCMODE) === O_WRONLY
      ? (flags & ~O_ACCMODE) | O_RDWR
      : flags;
    return (openFlagsToWire(adjusted, this.#options.hostArch) & ~OpenFlags.O_DIRECT) >>> 0;
  }

  #opts(ctx: RequestContext): CallOptions {
    return { signal: ctx.signal };
  }

  /** Keeps node handle `node` (if any) for `entry`'s inode; gives it back for a refused entry. */
  #keepNode(entry: Entry | Errno, node: number | undefined): void {
    if (node === undefined) return;
    if (isErrno(entry)) this.#nodes.release(node);
    else this.#nodes.issued(entry.key!, node);
  }

  /**
   * Where `node` (`name` in it, when given) is for the satellite: from the nearest node handle
   * on its chain of names, or from the root (always with `fromRoot`).
   */
  #where(node: Node, name?: string, fromRoot = false): Where | Errno {
    const w = this.#nodes.where(node, name, fromRoot);
    if (w === undefined) return ENOENT;
    return pathTooLong(w.path) ? ENAMETOOLONG : w;
  }

  /**
   * Runs `call` at `w` (where `node`, `name` in it, is); when the node handle it went by was
   * stale (ESTALE: forgotten meanwhile, or an earlier satellite's), drops it and runs it once
   * more from the root.
   */
  async #at<R extends RpcResult<unknown> | Errno>(
    node: Node,
    name: string | undefined,
    call: (w: Where) => Promise<R>,
    w: Where | Errno = this.#where(node, name),
  ): Promise<R | Errno> {
    if (isErrno(w)) return w;
    const r = await call(w);
    if (w.at === undefined || isErrno(r) || r.ok || r.code !== "ESTALE") return r;
    this.#nodes.stale(w.at);
    const again = this.#where(node, name, true);
    return isErrno(again) ? again : await call(again);
  }

  /** `#at` for calls naming two places (rename, link), given as their `from` and `to` params. */
  async #atTwo<R extends RpcResult<unknown>>(
    a: [Node, string | undefined],
    b: [Node, string],
    call: (places: { fromAt?: number; from: string; toAt?: number; to: string }) => Promise<R>,
  ): Promise<R | Errno> {
    let from = this.#where(a[0], a[1]);
    if (isErrno(from)) return from;
    let to = this.#where(b[0], b[1]);
    if (isErrno(to)) return to;
    const r = await call({ fromAt: from.at, from: from.path, toAt: to.at, to: to.path });
    if ((from.at === undefined && to.at === undefined) || r.ok || r.code !== "ESTALE") return r;
    if (from.at !== undefined) this.#nodes.stale(from.at);
    if (to.at !== undefined) this.#nodes.stale(to.at);
    from = this.#where(a[0], a[1], true);
    if (isErrno(from)) return from;
    to = this.#where(b[0], b[1], true);
    if (isErrno(to)) return to;
    return await call({ fromAt: from.at, from: from.path, toAt: to.at, to: to.path });
  }

  /**
   * Something changes through the mount at (parent, name) (the node itself for the root):
   * `inode`'s attributes, or with "links" the names of an inode (link, unlink, rmdir, rename:
   * its nlink changes, in every listing of it). Listed attributes it may leave stale are
   * forgotten: the entry's and its directory's (mtime, nlink), or all of them when the inode
   * may be listed under other names too, or its attributes are not known.
   */
  #changed(parent: Node | undefined, name: string, inode?: Node | "links"): void {
    this.#changes.note();
    this.#ahead.drop();
    this.#smallFiles.clear();
    this.#changedAt = Date.now();
    if (parent === undefined || inode === "links" || (inode && this.#mayHaveLinks(inode))) {
      this.#attrs.forgetAllListed();
    } else {
      this.#attrs.forgetListed(parent.key, name);
      const above = parent.parent;
      if (above !== undefined) this.#attrs.forgetListed(above.key, parent.name);
    }
    if (parent !== undefined) this.#attrs.notePresent(parent.key, name);
  }

  /** Whether `node` may have names in other directories (a file with nlink > 1, or unknown). */
  #mayHaveLinks(node: Node): boolean {
    const attr = this.#attrs.attrOf(node);
    return attr === undefined || ((attr.mode & S_IFMT) !== S_IFDIR && attr.nlink > 1);
  }

  /** `node`'s data changes through `handle` (a write, fallocate, copy into it). */
  #dataChanged(node: Node, handle: Handle): void {
    this.#changed(node.parent, node.name, node);
    this.#openFiles.changed(handle.key);
    this.#attrs.forgetChanged(node.key); // a flush's attributes are older now
  }

  /** `stat` checked; EIO (logged once) when it cannot be shown to the kernel. */
  #checked(stat: Stat): Stat | Errno {
    const problem = statProblem(stat);
    if (problem === undefined) return stat;
    this.#warnOnce("stat", `The satellite answered attributes that cannot be used: ${problem}`);
    return EIO;
  }

  /**
   * The entry told to the kernel for `stat`, an entry of `parent` read by the satellite after
   * event `since` (the live view's timeouts). Its node keeps it when the kernel is told
   * (`entered`).
   */
  #entry(stat: Stat, parent?: Node, since?: number): Entry | Errno {
    const checked = this.#checked(stat);
    if (isErrno(checked)) return checked;
    const attr = statToAttr(stat);
    const key = statKey(stat);
    const t = this.#timeouts(stat, key, parent, since);
    const stable = this.#long(t.attr);
    const entry: FsEntry = {
      attr,
      key,
      entryTimeout: t.entry,
      attrTimeout: t.attr,
      noXattrs: stat.hasXattrs === false,
      stable,
      hasXattrs: stat.hasXattrs,
      longSince: stable ? since : undefined,
      changes: this.#changes.count,
    };
    return entry;
  }

  #timeouts(stat: Stat, key: string, parent?: Node, since?: number): Timeouts {
    if (this.#live === undefined || parent === undefined || since === undefined) {
      return { entry: this.#options.entryTimeout, attr: this.#options.attrTimeout };
    }
    const dir = (stat.mode & S_IFMT) === S_IFDIR;
    return this.#live.entry(parent, key, dir, `${stat.devMajor}:${stat.devMinor}:`, since);
  }

  /**
   * `value`, once the kernel has taken the change feed's notices sent so far: an answer showing
   * a state after an event never reaches a process before the event's invalidations (see
   * LiveView.settled, which bounds the wait).
   */
  #afterNotices<T>(value: T): T | Promise<T> {
    const taken = this.#live?.settled();
    return taken === undefined ? value : taken.then(() => value);
  }

  /** Events counted so far (0 without the feed). */
  #since(): number {
    return this.#live?.seq ?? 0;
  }

  /** Attributes of `node` the feed still vouches for, as told to the kernel. */
  #vouchedAttr(node: Node): AttrResult | undefined {
    const told = this.#attrs.longOf(node);
    if (told === undefined || this.#live === undefined) return undefined;
    const attr = this.#attrs.attrOf(node);
    if (attr === undefined || told.changes !== this.#changes.count) return undefined;
    const key = node.key;
    const timeout = this.#live.attr(
      node,
      (attr.mode & S_IFMT) === S_IFDIR,
      key.slice(0, key.lastIndexOf(":") + 1),
      told.seq,
    );
    return this.#long(timeout) ? { attr, timeout, stable: true } : undefined;
  }

  /**
   * True for the change feed's long timeout. Attributes told with it stay as told until the feed
   * invalidates the inode (or the mount changes it), so the kernel's GETATTR may be answered with
   * them without asking (`Entry.stable`).
   */
  #long(timeout: number): boolean {
    const long = this.#options.live?.timeout ?? 0;
    return long > 0 && timeout === long;
  }

  /**
   * Whether `stat`, answered for where `node` is, is `node`'s inode. Not when its name now holds
   * another one (replaced inside the container since the kernel's lookup, even by an inode that
   * took the same number but is of another type): its attributes must not reach the kernel for `node`
   * (another file type makes the kernel fail the inode with EIO), and the caller answers ESTALE,
   * on which the kernel looks the name up again and retries.
   */
  #isNode(node: Node, stat: Stat): boolean {
    if (node.parent === undefined && node.path === "/") return true; // the root
    if (statKey(stat) !== node.key) return false;
    // The same number, reused at once for an inode of another type (a file replaced by a link)
    const told = this.#attrs.attrOf(node);
    return told === undefined || ((told.mode ^ stat.mode) & S_IFMT) === 0;
  }

  /** The attribute answer for `node` from `stat` (read by the satellite after event `since`). */
  #attrResult(node: Node, stat: Stat, since?: number): AttrResult | Errno {
    const checked = this.#checked(stat);
    if (isErrno(checked)) return checked;
    const attr = statToAttr(stat);
    this.#attrs.setAttr(node, attr);
    const timeout = this.#live === undefined || since === undefined
      ? this.#options.attrTimeout
      : this.#live.attr(
        node,
        (stat.mode & S_IFMT) === S_IFDIR,
        `${stat.devMajor}:${stat.devMinor}:`,
        since,
      );
    this.#attrs.noteXattrs(node, stat.hasXattrs, timeout * 1000);
    if (this.#long(timeout) && since !== undefined) {
      this.#attrs.noteLong(node, since, this.#changes.count);
    }
    return { attr, timeout, noXattrs: stat.hasXattrs === false, stable: this.#long(timeout) };
  }

  /** Mode and group of directory `dir`, asked of the satellite when not known. */
  async #dirAttr(ctx: RequestContext, dir: Node): Promise<{ mode: number; gid: number }> {
    const known = this.#attrs.attrOf(dir);
    if (known !== undefined) return known;
    const r = await this.#at(dir, undefined, (w) => this.#rpc.lstat(w, this.#opts(ctx)));
    if (!isErrno(r) && r.ok && statProblem(r.value) === undefined) {
      this.#attrs.setAttr(dir, statToAttr(r.value));
      return r.value;
    }
    return { mode: S_IFDIR, gid: ctx.gid }; // the create itself will report the problem
  }

  /** Owner of a new inode in `parent`: the caller, with a set-group-ID directory's group. */
  #owner(ctx: RequestContext, parentAttr: { mode: number; gid: number }): {
    uid: number;
    gid: number;
  } {
    const gid = (parentAttr.mode & S_ISGID) !== 0 ? parentAttr.gid : ctx.gid;
    return { uid: ctx.uid, gid };
  }

  /**
   * The entry of a node just made in `dir` (asked after event `since`), with the directory's
   * attributes after (noted, and answered when vouched for: see `#dirChanged`).
   */
  #made(
    dir: Node,
    made: { stat: Stat; dir?: Stat },
    since: number,
  ): Entry | Errno {
    const changed = this.#dirChanged(dir, made.dir, since);
    // The feed vouches for what is made in a watched directory as for what is found there.
    const entry = this.#entry(made.stat, dir, since);
    if (!isErrno(entry) && changed !== undefined) entry.dir = changed.dir;
    return entry;
  }

  /** Keeps a directory's attributes taken right after a change in it, for the next GETATTR. */
  #noteDir(dir: Node, stat: Stat | undefined): void {
    const usable = stat !== undefined && statProblem(stat) === undefined;
    this.#attrs.noteChanged(dir.key, usable ? statToAttr(stat) : undefined, this.#changes.count);
  }

  /**
   * Waits for `call`, sent without the request's signal because its answer holds a satellite
   * descriptor. Interrupted first, it answers EINTR at once and hands the late answer to
   * `release` (the client would drop it, leaking the descriptor).
   */
  #holding<T>(
    ctx: RequestContext,
    call: () => Promise<RpcResult<T>>,
    release: (value: T) => void,
  ): Promise<RpcResult<T> | Errno> {
    const signal = ctx.signal;
    if (signal.aborted) return Promise.resolve(EINTR);
    const sent = call();
    return new Promise((resolve) => {
      const onAbort = (): void => {
        resolve(EINTR);
        sent.then((r) => r.ok && release(r.value));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      sent.then((r) => {
        signal.removeEventListener("abort", onAbort);
        resolve(r);
      });
    });
  }

  /**
   * The connection changed (the satellite was redeployed): what was remembered may be stale.
   * Nodes are revalidated by the kernel's next LOOKUP (a different identity at a path detaches
   * the old node); handles are reopened by their next call (`#via`).
   */
  reconnected(): void {
    this.#changes.note();
    this.#ahead.drop();
    this.#smallFiles.clear();
    this.#attrs.clear();
    if (this.#live !== undefined) {
      this.#live.reset();
      void this.#startFeed();
    }
  }

  /**
   * The calls to use with `handle`: those of its own connection, after reopening it on the
   * current connection when the satellite that answered it is gone. A handle whose file is no
   * longer at its path (another inode there, or none) answers ESTALE from then on; one whose
   * connection did not come back within the grace period answers EIO (and is tried again).
   */
  async #via(node: Node, handle: Handle): Promise<RpcCalls | Errno> {
    const now = this.#viaNow(handle);
    if (now !== undefined) return now;
    if (handle.lazy === true && !handle.dir) {
      // Opened from the kernel's cache: its first call that needs the file opens it for real.
      const failed = await (handle.reopening ??= this.#reopen(node, handle).finally(() => {
        handle.reopening = undefined;
      }));
      if (failed !== undefined) return failed;
      handle.lazy = false;
      return this.#link.on(handle.gen);
    }
    if (!this.#link.up && !await this.#link.connected()) return EIO;
    if (handle.gen !== this.#link.generation) {
      const failed = await (handle.reopening ??= this.#reopen(node, handle).finally(() => {
        handle.reopening = undefined;
      }));
      if (failed !== undefined) return failed;
    }
    return this.#link.on(handle.gen);
  }

  /** `#via` without waiting, when nothing needs opening or a connection: else undefined. */
  #viaNow(handle: Handle): RpcCalls | Errno | undefined {
    if (handle.lost !== undefined) return handle.lost;
    if (handle.lazy === true && !handle.dir) return undefined;
    if (handle.id === NO_HANDLE) return this.#rpc;
    if (handle.gen === this.#link.generation && this.#link.up) return this.#link.on(handle.gen);
    return undefined;
  }

  /** Opens `handle`'s file again on the current connection, if the same inode is at its path. */
  async #reopen(node: Node, handle: Handle): Promise<Errno | undefined> {
    const gen = this.#link.generation;
    const rpc = this.#link.on(gen);
    const where = node.path ?? `inode ${handle.key}`;
    const lose = (why: string): Errno => {
      handle.lost = ESTALE;
      this.#options.logger.warn(
        handle.lazy
          ? `Cannot open '${where}' (opened from the kernel's cache): ${why} (ESTALE)`
          : `Cannot reopen '${where}' after reconnecting: ${why} (ESTALE)`,
      );
      return ESTALE;
    };
    const path = relPath(node);
    if (path === undefined) return lose("it was deleted");
    // A file opened from the kernel's cache is opened for its first READ: the open brings the
    // file's identity and its first bytes along (one round trip, not three).
    const flags = handle.reopenFlags ?? O_RDONLY;
    const readAhead = handle.lazy === true && (flags & O_ACCMODE) === O_RDONLY
      ? MAX_OPEN_READ_AHEAD
      : undefined;
    const mark = this.#openFiles.mark();
    const r = handle.dir
      ? await rpc.opendir({ path })
      : await rpc.open({ path, flags: this.#wireFlags(flags), stat: true, readAhead });
    if (!r.ok) {
      // The connection went away again: try again with the next one.
      if (gen !== this.#link.generation || !this.#link.up) return EIO;
      return lose(r.message);
    }
    const told = "stat" in r.value ? r.value.stat : undefined;
    const st = told !== undefined
      ? { ok: true as const, value: told }
      : await rpc.fstat({ handle: r.value.handle });
    if (!st.ok || statKey(st.value) !== handle.key) {
      void rpc.release({ handle: r.value.handle });
      if (!st.ok && (gen !== this.#link.generation || !this.#link.up)) return EIO;
      return lose(st.ok ? "another file is at its path" : st.message);
    }
    handle.id = r.value.handle;
    handle.gen = gen;
    handle.readAhead = undefined;
    const data = "data" in r.value ? r.value.data : undefined;
    if (data !== undefined && readAhead !== undefined) {
      this.#openFiles.keepReadAhead(handle, data, readAhead, mark);
    }
    this.#options.logger.debug(
      handle.lazy === true
        ? `Opened '${where}' (opened from the kernel's cache) for its first read`
        : `Reopened '${where}' after reconnecting`,
    );
    return undefined;
  }

  entered(node: Node, entry: Entry): void {
    this.#attrs.setAttr(node, entry.attr);
    const e = entry as Partial<FsEntry>; // the entries this filesystem answers are FsEntry
    this.#attrs.noteXattrs(node, e.hasXattrs, (entry.attrTimeout ?? 0) * 1000);
    if (e.longSince !== undefined && e.changes !== undefined) {
      this.#attrs.noteLong(node, e.longSince, e.changes);
    }
  }

  forget(node: Node): void {
    this.#nodes.forget(node.key);
    this.#seen.delete(node);
    this.#live?.forget(node);
  }

  /** Remembers `node` (the kernel uses it) for {@link revalidate}; the newest are kept. */
  #see(node: Node): void {
    if (node.parent === undefined) return;
    this.#seen.delete(node);
    this.#seen.add(node);
    if (this.#seen.size > SEEN_LIMIT) this.#seen.delete(this.#seen.values().next().value!);
  }

  /**
   * After a reconnect: asks the satellite about each node the kernel used lately and hands
   * those whose path now holds another inode (or nothing) to `changed` (the mount tells the
   * kernel to drop its entry). Resolves with how many changed.
   */
  async revalidate(changed: (node: Node) => Promise<void>): Promise<number> {
    let count = 0;
    for (const node of [...this.#seen]) {
      const path = relPath(node);
      if (path === undefined) continue;
      const r = await this.#rpc.lstat({ path });
      if (r.ok ? statKey(r.value) === node.key : r.code !== "ENOENT") continue;
      count++;
      this.#seen.delete(node);
      await changed(node);
    }
    return count;
  }

  async lookup(ctx: RequestContext, parent: Node, name: string): Promise<Entry | Errno> {
    this.#see(parent);
    const base = relPath(parent);
    const path = base === undefined ? undefined : base === "" ? name : `${base}/${name}`;
    const since = this.#since();
    // Watched before the satellite is asked: an answer "absent" is then as new as the watch.
    const watched = this.#live?.watches(parent.key) === true;
    const listed = this.#attrs.takeListed(parent.key, name);
    if (listed !== undefined) return this.#entry(listed.stat, parent, listed.since);
    // Not in a fresh complete listing of the parent: the kernel could have been told as much.
    if (this.#attrs.knownAbsent(parent.key, name)) return this.#absentListed(parent, name, since);
    // A directory walked ahead, entered later than its parent's listing is fresh (any event
    // drops what the walker holds: it is as new as the last event).
    const walked = path === undefined ? undefined : this.#ahead.dirStat(path);
    if (walked !== undefined) return this.#entry(walked, parent, since);
    // Names asked one by one: the directory's listing answers this one and those to come.
    const listing = this.#listingForLookups.get(parent.key) ?? this.#listForLookups(ctx, parent);
    if (listing !== undefined) {
      await listing;
      const listed = this.#attrs.takeListed(parent.key, name);
      if (listed !== undefined) return this.#entry(listed.stat, parent, listed.since);
      if (this.#attrs.knownAbsent(parent.key, name)) {
        return this.#absentListed(parent, name, since);
      }
    }
    const r = await this.#at(parent, name, (w) => this.#rpc.lookup(w, this.#opts(ctx)));
    if (isErrno(r)) return r;
    if (!r.ok) {
      if (r.code !== "ENOENT" || !watched) return fail(r);
      return this.#absent(parent, name, since);
    }
    const entry = this.#entry(r.value.stat, parent, since);
    this.#keepNode(entry, r.value.node);
    return entry;
  }

  /** ENOENT for `name` in `parent`, the feed's long negative timeout where it vouches. */
  #absent(parent: Node, name: string, since: number): Errno {
    const timeout = this.#live?.negative(parent, name, since);
    return timeout === undefined ? ENOENT : new Absent(timeout);
  }

  /** ENOENT for `name`, absent from `parent`'s complete listing (see `#absent`). */
  #absentListed(parent: Node, name: string, since: number): Errno {
    return this.#attrs.absentVouched(parent.key, name) ? this.#absent(parent, name, since) : ENOENT;
  }

  /**
   * Counts a LOOKUP miss in `dir`; at the LOOKUP_MISSES_TO_LIST-th in a row, or at once when a
   * walk ahead holds its listing, lists `dir` (as an OPENDIR would: its names and attributes
   * serve the LOOKUPs, its subdirectories are walked ahead) and gives the listing's promise,
   * which never rejects (a failed listing leaves the names to lstat).
   */
  #listForLookups(ctx: RequestContext, dir: Node): Promise<void> | undefined {
    const path = relPath(dir);
    if (path === undefined) return undefined;
    // A walk ahead brought the directory's listing (or is bringing it): no round trip of its own.
    const held = this.#ahead.holds(dir.key);
    const last = this.#lookupMisses.get(dir.key);
    const recent = last !== undefined && Date.now() - last.at <= LOOKUP_MISS_MS;
    const listed = recent ? last.listed : 0;
    if (!held) {
      const count = recent ? last.count + 1 : 1;
      this.#lookupMisses.set(dir.key, { count, at: Date.now(), listed });
      const wanted = Math.max(LOOKUP_MISSES_TO_LIST, Math.ceil(listed / LISTED_NAMES_PER_MISS));
      if (count < wanted) return undefined;
    }
    const list = async (): Promise<void> => {
      const changesAt = this.#changes.mark();
      const since = this.#since();
      const ahead = held ? await this.#ahead.take(dir.key) : undefined;
      let names = ahead?.entries.length ?? 0;
      if (ahead !== undefined) this.#fromAhead(dir, path, ahead, changesAt, since);
      else {
        // Several LOOKUPs wait for it: one of them being interrupted does not cancel it.
        const opened = await this.#openDir({ ...ctx, signal: UNINTERRUPTED }, dir, path, false);
        if (!isErrno(opened)) {
          names = opened.handle.listing?.size ?? 0;
          await this.#releaseHandle(opened.handle);
        }
      }
      this.#lookupMisses.set(dir.key, { count: 0, at: Date.now(), listed: Math.max(names, 1) });
    };
    const listing = list().catch(() => {}).finally(() => this.#listingForLookups.delete(dir.key));
    this.#listingForLookups.set(dir.key, listing);
    return listing;
  }

  async getattr(
    ctx: RequestContext,
    node: Node,
    handle: Handle | undefined,
  ): Promise<AttrResult | Errno> {
    return this.#afterNotices(await this.#getattr(ctx, node, handle));
  }

  async #getattr(
    ctx: RequestContext,
    node: Node,
    handle: Handle | undefined,
  ): Promise<AttrResult | Errno> {
    this.#see(node);
    const coming = this.#attrsComing.get(node.key);
    if (coming !== undefined) await coming;
    // Asked right after our own change in it (the kernel drops a directory's attributes then).
    const changed = this.#attrs.takeChanged(node.key, this.#changes.count);
    if (changed !== undefined) {
      this.#attrs.setAttr(node, changed);
      return { attr: changed, timeout: this.#options.attrTimeout };
    }
    // Attributes the change feed vouches for have not changed since they were told.
    const vouched = this.#vouchedAttr(node);
    if (vouched !== undefined) return vouched;
    // An open file answers for itself, also once unlinked (fstat after unlink).
    const path = relPath(node);
    const given = handle?.id === NO_HANDLE ? undefined : handle;
    const open = given ??
      (path === undefined ? this.#openFiles.any(node.key) : undefined);
    if (open === undefined && path === undefined) return ENOENT;
    const rpc = open === undefined ? undefined : await this.#via(node, open);
    if (isErrno(rpc) && path === undefined) return rpc;
    const since = this.#since();
    if (rpc !== undefined && !isErrno(rpc)) {
      const r = await rpc.fstat({ handle: open!.id }, this.#opts(ctx));
      return r.ok ? this.#attrResult(node, r.value, since) : fail(r);
    }
    const r = await this.#at(node, undefined, (w) => this.#rpc.lstat(w, this.#opts(ctx)));
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    return this.#isNode(node, r.value) ? this.#attrResult(node, r.value, since) : ESTALE;
  }

  async setattr(
    ctx: RequestContext,
    node: Node,
    changes: SetAttrChanges,
    handle: Handle | undefined,
  ): Promise<AttrResult | Errno> {
    this.#changed(node.parent, node.name, node);
    if (changes.size !== undefined) this.#openFiles.changed(node.key);
    const path = relPath(node);
    if (path === undefined) {
      // Unlinked but open: a truncate goes through the handle; times (the kernel's writeback
      // cache sends them when it flushes an unlinked file) only change what we tell the kernel,
      // since no name is left to set them by. Mode and owner changes need a name: ENOENT.
      const open = handle !== undefined && handle.id !== NO_HANDLE
        ? handle
        : this.#openFiles.any(node.key);
      const attr = this.#attrs.attrOf(node);
      if (open === undefined || attr === undefined) return ENOENT;
      if (changes.mode !== undefined || changes.uid !== undefined || changes.gid !== undefined) {
        return ENOENT;
      }
      if (changes.size !== undefined) {
        const rpc = await this.#via(node, open);
        if (isErrno(rpc)) return rpc;
        const r = await rpc.ftruncate(
          { handle: open.id, size: BigInt(changes.size) },
          this.#opts(ctx),
        );
        if (!r.ok) return fail(r);
      }
      const now = (): Timestamp => {
        const ms = Date.now();
        return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
      };
      const time = (t: Timestamp | "now" | undefined, old: Timestamp): Timestamp =>
        t === undefined ? old : t === "now" ? now() : t;
      const updated = {
        ...attr,
        size: changes.size ?? attr.size,
        atime: time(changes.atime, attr.atime),
        mtime: time(changes.mtime, attr.mtime),
        ctime: changes.ctime ?? attr.ctime,
      };
      this.#attrs.setAttr(node, updated);
      return { attr: updated, timeout: 0 };
    }
    // Through the handle when it is (again) open, else by path.
    const via = handle === undefined || handle.id === NO_HANDLE
      ? undefined
      : await this.#via(node, handle);
    const rpc = via === undefined || isErrno(via) ? this.#rpc : via;
    const r = await this.#at(node, undefined, (w) =>
      rpc.setattr({
        ...w,
        handle: via === undefined || isErrno(via) ? undefined : handle!.id,
        mode: changes.mode,
        uid: changes.uid,
        gid: changes.gid,
        size: changes.size === undefined ? undefined : BigInt(changes.size),
        atime: wireTime(changes.atime),
        mtime: wireTime(changes.mtime),
      }, this.#opts(ctx)));
    if (isErrno(r)) return r;
    if (!r.ok) {
      // A symlink where the kernel's regular file or directory was: replaced meanwhile.
      const type = (this.#attrs.attrOf(node)?.mode ?? 0) & S_IFMT;
      const swapped = (r.code === "ELOOP" || r.code === "EOPNOTSUPP") &&
        (type === S_IFREG || type === S_IFDIR);
      return swapped ? ESTALE : fail(r);
    }
    if (this.#isNode(node, r.value)) return this.#attrResult(node, r.value);
    if (via === undefined || isErrno(via)) return ESTALE;
    // Changed through the handle: its file answers for itself, wherever its name went.
    const st = await via.fstat({ handle: handle!.id }, this.#opts(ctx));
    return st.ok ? this.#attrResult(node, st.value) : fail(st);
  }

  async readlink(ctx: RequestContext, node: Node): Promise<string | Errno> {
    // A fresh walk brought it along (the kernel would have cached it as long).
    let answer = this.#ahead.target(node.key);
    if (answer === undefined) {
      const r = await this.#at(node, undefined, (w) => this.#rpc.readlink(w, this.#opts(ctx)));
      if (isErrno(r)) return r;
      // EINVAL: no symlink at the path any more (the kernel reads links of symlink nodes only).
      if (!r.ok) return r.code === "EINVAL" ? ESTALE : fail(r);
      answer = r.value;
    }
    let target: string;
    try {
      target = typeof answer === "string" ? answer : decoder.decode(answer);
    } catch {
      return EINVAL; // a target that is not UTF-8 cannot be shown faithfully
    }
    const problem = targetProblem(target);
    if (problem === undefined) return target;
    this.#warnOnce(
      "target",
      `The satellite answered a symlink target that cannot be used: ${problem}`,
    );
    return EIO;
  }

  async symlink(
    ctx: RequestContext,
    parent: Node,
    name: string,
    target: string,
  ): Promise<Entry | Errno> {
    const where = this.#where(parent, name);
    this.#changed(parent, name);
    if (isErrno(where)) return where;
    const owner = this.#owner(ctx, await this.#dirAttr(ctx, parent));
    const since = this.#since();
    const r = await this.#at(
      parent,
      name,
      (w) => this.#rpc.symlink({ ...w, target, owner }, this.#opts(ctx)),
    );
    if (isErrno(r)) return r;
    return r.ok ? this.#made(parent, r.value, since) : fail(r);
  }

  async mknod(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    rdev: number,
  ): Promise<Entry | Errno> {
    const where = this.#where(parent, name);
    this.#changed(parent, name);
    if (isErrno(where)) return where;
    const { major, minor } = decodeDev(rdev);
    const owner = this.#owner(ctx, await this.#dirAttr(ctx, parent));
    const since = this.#since();
    const r = await this.#at(parent, name, (w) =>
      this.#rpc.mknod(
        { ...w, mode, rdevMajor: major, rdevMinor: minor, owner },
        this.#opts(ctx),
      ));
    if (isErrno(r)) return r;
    return r.ok ? this.#made(parent, r.value, since) : fail(r);
  }

  async mkdir(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
  ): Promise<Entry | Errno> {
    const where = this.#where(parent, name);
    this.#changed(parent, name);
    if (isErrno(where)) return where;
    const parentAttr = await this.#dirAttr(ctx, parent);
    // A directory made in a set-group-ID directory inherits the bit, as on ext4.
    const inherited = (parentAttr.mode & S_ISGID) !== 0 ? S_ISGID : 0;
    const askedAt = Date.now();
    const owner = this.#owner(ctx, parentAttr);
    const since = this.#since();
    const r = await this.#at(
      parent,
      name,
      (w) => this.#rpc.mkdir({ ...w, mode: mode | inherited, owner }, this.#opts(ctx)),
    );
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    const entry = this.#made(parent, r.value, since);
    this.#keepNode(entry, r.value.node);
    // Made empty just now: its names are known for the listing timeout, as a listing made then
    // would be; beyond it while the feed watches it, when the satellite announced it watched in
    // this answer (it does so only if the directory was still empty once the watch was in place).
    if (!isErrno(entry)) {
      const key = entry.key!;
      this.#attrs.noteComplete(key, [], askedAt, this.#live?.watches(key) ?? false);
    }
    return entry;
  }

  async unlink(
    ctx: RequestContext,
    parent: Node,
    name: string,
  ): Promise<void | DirChanged | Errno> {
    const where = this.#where(parent, name);
    // The inode's link count drops: other names of it (in other listings) change too, unless
    // the kernel's node for the name is known to have no other (nlink 1).
    this.#changed(parent, name, this.#kernel?.childOf(parent, name) ?? "links");
    if (isErrno(where)) return where;
    const since = this.#since();
    const r = await this.#at(parent, name, (w) => this.#rpc.unlink(w, this.#opts(ctx)), where);
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    return this.#dirChanged(parent, r.value?.dir, since);
  }

  async rmdir(
    ctx: RequestContext,
    parent: Node,
    name: string,
  ): Promise<void | DirChanged | Errno> {
    const where = this.#where(parent, name);
    this.#changed(parent, name, "links");
    if (isErrno(where)) return where;
    const since = this.#since();
    const r = await this.#at(parent, name, (w) => this.#rpc.rmdir(w, this.#opts(ctx)), where);
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    return this.#dirChanged(parent, r.value?.dir, since);
  }

  /**
   * Notes `stat`, directory `dir`'s attributes read by the satellite right after a change in it
   * (after event `since`), and answers them for the kernel's next GETATTR when the change feed
   * vouches for them. Not while notices are out: the reader would answer that GETATTR without
   * waiting for them, as `getattr` does (`#afterNotices`).
   */
  #dirChanged(dir: Node, stat: Stat | undefined, since: number): DirChanged | undefined {
    const vouched = stat !== undefined && this.#live !== undefined && !this.#live.noticesOut &&
        statProblem(stat) === undefined && this.#isNode(dir, stat)
      ? this.#attrResult(dir, stat, since)
      : undefined;
    // After #attrResult, which forgets what was noted before: the kernel's GETATTR may still
    // reach `getattr` (the reader does not keep every answer, nor while tracing).
    this.#noteDir(dir, stat);
    return vouched === undefined || isErrno(vouched) || vouched.stable !== true
      ? undefined
      : { dir: vouched };
  }

  async rename(
    ctx: RequestContext,
    parent: Node,
    name: string,
    newParent: Node,
    newName: string,
    flags: number,
  ): Promise<void | Errno> {
    this.#changed(parent, name, "links");
    this.#changed(newParent, newName, "links");
    const r = await this.#atTwo(
      [parent, name],
      [newParent, newName],
      (places) => this.#rpc.rename({ ...places, flags }, this.#opts(ctx)),
    );
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    this.#noteDir(parent, r.value.fromDir);
    this.#noteDir(newParent, r.value.toDir);
  }

  async link(
    ctx: RequestContext,
    node: Node,
    newParent: Node,
    newName: string,
  ): Promise<Entry | Errno> {
    this.#changed(newParent, newName, "links");
    const since = this.#since();
    const r = await this.#atTwo(
      [node, undefined],
      [newParent, newName],
      (places) => this.#rpc.link(places, this.#opts(ctx)),
    );
    if (isErrno(r)) return r;
    return r.ok ? this.#made(newParent, r.value, since) : fail(r);
  }

  /**
   * Page cache policy: files that report size 0 (procfs, sysfs…) are read directly. A read-only
   * open's close sends no FLUSH: it has nothing to report (locks are the kernel's, and without
   * the writeback cache a flush reports only its own handle's writes).
   */
  #opened(node: Node, id: number, gen: number, flags: number): Opened<Handle> {
    const attr = this.#attrs.attrOf(node);
    const special = attr !== undefined && (attr.mode & S_IFMT) === S_IFREG && attr.size === 0;
    const handle = this.#newFile(id, gen, flags, node.key, !special);
    return {
      handle,
      directIo: special,
      keepCache: !special,
      noFlush: (flags & O_ACCMODE) === O_RDONLY && !this.#options.writebackCache,
      writeAhead: writeAhead(handle, flags),
      quietFlush: this.#quietFlush(),
    };
  }

  /** A registered handle of the open file `id` (of connection `gen`) of inode `key`. */
  #newFile(id: number, gen: number, flags: number, key: string, writeBehind: boolean): Handle {
    const writes = new FileWrites(key, writeBehind && this.#options.writeBehind !== false);
    // Opened again after a reconnect: never create, nor truncate what was written since.
    const reopenFlags = flags & ~(O_CREAT | O_EXCL | O_TRUNC);
    return this.#openFiles.add({ id, gen, reopenFlags, dir: false, key, writes });
  }

  /** Releases, through `rpc`, a satellite handle whose open was answered EINTR. */
  #orphan(rpc: RpcCalls): (value: { handle: number }) => void {
    return (value) => void rpc.release({ handle: value.handle });
  }

  /**
   * The calls of the current connection (waiting for one within the grace period) and its
   * number, for calls whose answer holds a satellite handle.
   */
  async #current(): Promise<{ rpc: RpcCalls; gen: number } | Errno> {
    if (!this.#link.up && !await this.#link.connected()) return EIO;
    const gen = this.#link.generation;
    return { rpc: this.#link.on(gen), gen };
  }

  async open(ctx: RequestContext, node: Node, flags: number): Promise<Opened<Handle> | Errno> {
    return this.#afterNotices(await this.#open(ctx, node, flags));
  }

  async #open(ctx: RequestContext, node: Node, flags: number): Promise<Opened<Handle> | Errno> {
    this.#see(node);
    if ((flags & O_TRUNC) !== 0) {
      // A truncating open changes the file (the kernel sends no SETATTR for it).
      this.#changed(node.parent, node.name, node);
      this.#openFiles.changed(node.key);
    }
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    // A read-only open of a file the change feed vouches for: its pages the kernel keeps are
    // current, so it may read them without the satellite; opened for real when it asks.
    const attr = this.#attrs.attrOf(node);
    if (
      (flags & (O_ACCMODE | O_TRUNC)) === O_RDONLY && attr !== undefined &&
      (attr.mode & S_IFMT) === S_IFREG && attr.size > 0 && this.#live?.fileVouched(node)
    ) {
      const handle = this.#newFile(NO_HANDLE, this.#link.generation, flags, node.key, false);
      handle.lazy = true;
      // Its contents read ahead went to the kernel's pages: served, and the next asked for.
      const dir = node.parent;
      if (dir !== undefined && this.#smallFiles.served(dir.key, node.name) !== undefined) {
        this.#fetchSmallFiles(dir, node.name, false, false);
      }
      // Later opens alike are answered the same way without asking (the session ends that at
      // any change of the node); each gets its handle from `cachedHandle`.
      return { handle, keepCache: true, noFlush: true, reuse: this.#options.live?.timeout };
    }
    const readOnly = (flags & (O_ACCMODE | O_TRUNC)) === O_RDONLY;
    if (readOnly && attr !== undefined) {
      const whole = await this.#smallFile(node, attr);
      if (whole !== undefined) {
        const handle = this.#newFile(NO_HANDLE, this.#link.generation, flags, node.key, false);
        handle.lazy = true; // opened for real only if the kernel asks for more than it holds
        this.#openFiles.keepWhole(handle, whole);
        return { handle, keepCache: true, noFlush: true };
      }
    }
    // Read-only opens fetch the first bytes in the same round trip: a small file is then read
    // without another one (the satellite only reads regular files with a size).
    const readAhead = (flags & O_ACCMODE) === O_RDONLY && (flags & O_TRUNC) === 0 &&
        this.#options.attrTimeout > 0
      ? MAX_OPEN_READ_AHEAD
      : undefined;
    const mark = this.#openFiles.mark();
    const cur = await this.#current();
    if (isErrno(cur)) return cur;
    const r = await this.#at(node, undefined, (w) =>
      this.#holding(
        ctx,
        () => cur.rpc.open({ ...w, flags: this.#wireFlags(flags), readAhead }),
        this.#orphan(cur.rpc),
      ));
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    const opened = this.#opened(node, r.value.handle, cur.gen, flags);
    if (r.value.quietClose === true) opened.handle.quietClose = true;
    if (readAhead !== undefined && !opened.directIo && this.#live?.fileVouched(node)) {
      // Read-only and vouched for: later opens alike are answered as the lazy ones above.
      opened.noFlush = true;
      opened.reuse = this.#options.live?.timeout;
    }
    const data = r.value.data;
    if (data !== undefined && readAhead !== undefined && !opened.directIo) {
      this.#openFiles.keepReadAhead(opened.handle, data, readAhead, mark);
    }
    return opened;
  }

  /**
   * The whole contents of `node` (a file of `attr`) read ahead of this open (or of the first read
   * of an open answered from the kernel's cache), waiting for a fetch under way that asked for
   * it; undefined when there are none. One that finds none counts towards fetching the next small
   * files of its directory.
   */
  async #smallFile(node: Node, attr: Attr): Promise<Uint8Array | undefined> {
    const dir = node.parent;
    if ((attr.mode & S_IFMT) !== S_IFREG || attr.size === 0) return undefined;
    if (dir === undefined || this.#attrs.listedTtlMs <= 0) return undefined;
    await this.#smallFiles.pending(dir.key, node.name);
    const { data, fetch } = this.#smallFiles.open(dir.key, node.name, node.key, attr);
    if (fetch === undefined) return data;
    // An open that missed and is small itself comes with the fetch: one round trip, not two.
    const self = data === undefined && attr.size <= SMALL_FILE_BYTES;
    const fetched = this.#fetchSmallFiles(dir, node.name, fetch === "missed", self);
    if (!self || fetched === undefined) return data;
    await fetched;
    return this.#smallFiles.take(dir.key, node.name, node.key, attr);
  }

  /**
   * Reads ahead the small files of `dir` that the opens to come are likely to want: its names
   * after `name` (readdir order, as walks open them; then around: a sorted glob's order is
   * another) not held nor opened in this pass. Nothing without a complete listing of `dir`, nor
   * right after a change through the mount. `missed`: asked by an open that found nothing;
   * `self`: that open's file first (it waits for the answer).
   */
  #fetchSmallFiles(
    dir: Node,
    name: string,
    missed: boolean,
    self: boolean,
  ): Promise<void> | undefined {
    // While the mount is written to (a build, a copy inside it), any change would drop them.
    if (Date.now() - this.#changedAt < SMALL_FILES_QUIET_MS) return undefined;
    const where = this.#where(dir);
    const names = this.#attrs.namesAround(
      dir.key,
      name,
      self ? MAX_READ_FILES - 1 : MAX_READ_FILES, // the schema's bound, with the opening file
      (n) => n === "." || n === ".." || !this.#smallFiles.wanted(dir.key, n),
    );
    // Every name opened in this pass, yet opens miss: a pass again, its pages may be gone.
    if (missed && names?.length === 0) this.#smallFiles.exhausted(dir.key);
    if (isErrno(where) || names === undefined || names.length === 0) return undefined;
    if (self) names.unshift(name);
    const askedAt = Date.now();
    const changes = this.#changes.count;
    const since = this.#since();
    const fetched = this.#rpc.readFiles({
      at: where.at,
      dir: where.path,
      names,
      maxFileBytes: SMALL_FILE_BYTES,
      maxBytes: MAX_READ_FILES_BYTES,
    }).then((r) => {
      // Read before a change through the mount or an event in the directory: not kept.
      if (!r.ok || changes !== this.#changes.count || this.#live?.changedSince(dir, since)) return;
      this.#smallFiles.offer(dir.key, names, r.value, (f) => statKey(f.stat), askedAt);
      this.#storePages(dir, names, r.value);
    }, () => {});
    this.#smallFiles.fetching(dir.key, names, fetched);
    return fetched;
  }

  /**
   * Puts the files read ahead into the kernel's page cache, so that their reads do not come
   * here: for inodes the kernel knows with the same size and mtime, none open for writing
   * (no page the kernel holds can be newer), and never with the writeback cache (dirty pages).
   */
  #storePages(
    dir: Node,
    names: readonly string[],
    files: readonly (WholeFile | undefined)[],
  ): void {
    const kernel = this.#kernel;
    if (kernel === undefined || this.#options.writebackCache) return;
    for (let i = 0; i < names.length && i < files.length; i++) {
      const file = files[i];
      const node = file === undefined ? undefined : kernel.childOf(dir, names[i]);
      if (file === undefined || node === undefined || node.key !== statKey(file.stat)) continue;
      const attr = this.#attrs.attrOf(node);
      if (
        attr === undefined || attr.size !== file.data.length ||
        attr.mtime.sec !== file.stat.mtimeSec || attr.mtime.nsec !== file.stat.mtimeNsec ||
        this.#openFiles.of(node.key).some((h) => (h.reopenFlags! & O_ACCMODE) !== O_RDONLY)
      ) continue;
      void kernel.storeData(node, 0, file.data);
      this.#smallFiles.stored(dir.key, names[i]);
    }
  }

  cachedHandle(node: Node, dir: boolean): Handle {
    this.#see(node);
    const gen = this.#link.generation;
    if (dir) return { id: NO_HANDLE, gen, dir: true, key: node.key, lazy: true };
    const handle = this.#newFile(NO_HANDLE, gen, O_RDONLY, node.key, false);
    handle.lazy = true;
    return handle;
  }

  async create(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    flags: number,
  ): Promise<Created<Handle> | Errno> {
    const where = this.#where(parent, name);
    this.#changed(parent, name);
    if (isErrno(where)) return where;
    const owner = this.#owner(ctx, await this.#dirAttr(ctx, parent));
    // Not cancellable once sent: an interrupted create would still make the file in the
    // container, and answering EINTR would tell the caller it was not made (a retry with O_EXCL
    // would then fail with EEXIST). The kernel takes a full answer to an interrupted request,
    // so the create is finished and answered.
    if (ctx.signal.aborted) return EINTR;
    const cur = await this.#current();
    if (isErrno(cur)) return cur;
    const wire = this.#wireFlags(flags);
    const since = this.#since();
    const r = await this.#at(
      parent,
      name,
      (w) => cur.rpc.create({ ...w, flags: wire, mode, owner }),
    );
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    const entry = this.#entry(r.value.stat, parent, since);
    if (isErrno(entry)) {
      this.#orphan(cur.rpc)(r.value);
      return entry;
    }
    const changed = this.#dirChanged(parent, r.value.dir, since);
    if (changed !== undefined) entry.dir = changed.dir;
    const handle = this.#newFile(r.value.handle, cur.gen, flags, entry.key!, true);
    if (r.value.quietClose === true) handle.quietClose = true;
    return { handle, entry, writeAhead: writeAhead(handle, flags), quietFlush: this.#quietFlush() };
  }

  /**
   * Whether a new handle's flush has nothing to do until a write through it (`flush`: no writes
   * of its own to settle or report); not with the writeback cache, whose flush covers every
   * handle of the inode.
   */
  #quietFlush(): boolean {
    return !this.#options.writebackCache;
  }

  async read(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    offset: number,
    size: number,
  ): Promise<Uint8Array | Errno> {
    const ahead = this.#openFiles.read(handle, offset, size);
    if (ahead !== undefined) return ahead;
    if (handle.lazy === true && handle.reopening === undefined && !handle.dir) {
      // Opened from the kernel's cache, which lacks the pages: read ahead, or opened for real.
      const attr = this.#attrs.attrOf(_node);
      const whole = attr === undefined ? undefined : await this.#smallFile(_node, attr);
      if (whole !== undefined && handle.lazy) {
        this.#openFiles.keepWhole(handle, whole);
        const data = this.#openFiles.read(handle, offset, size);
        if (data !== undefined) return data;
      }
    }
    const since = this.#since();
    const rpc = await this.#via(_node, handle);
    if (isErrno(rpc)) return rpc;
    // Opened for this read (from the kernel's cache): the open brought the first bytes.
    let data = this.#openFiles.read(handle, offset, size);
    if (data === undefined) {
      const r = await rpc.read(
        { handle: handle.id, offset: BigInt(offset), size: Math.min(size, MAX_IO_BYTES) },
        this.#opts(ctx),
      );
      if (!r.ok) return fail(r);
      data = r.value;
    }
    // An event in its directory was handled while this read was out (a worker's answer can come
    // after the event of a later change): the pages this answer fills must not outlive it.
    const live = this.#live;
    if (live !== undefined && live.changedSince(_node.parent ?? _node, since)) live.dropData(_node);
    return data;
  }

  /** The write states a flush or fsync of `handle` covers (the kernel's writeback cache writes
   * dirty pages through any writable handle of the inode, so then all of them). */
  #covered(handle: Handle): FileWrites[] {
    const own = handle.writes === undefined ? [] : [handle.writes];
    if (!this.#options.writebackCache) return own;
    const all = this.#openFiles.of(handle.key).map((h) => h.writes!);
    return [...own, ...all.filter((w) => w !== handle.writes)];
  }

  /** Whose released handles' failures a flush of `handle` reports: the inode's with the
   * writeback cache (its flush covers every handle), else none (fsync reports them). */
  #lostOf(handle: Handle): string | undefined {
    return this.#options.writebackCache ? handle.key : undefined;
  }

  async write(
    ctx: RequestContext,
    node: Node,
    handle: Handle,
    offset: number,
    data: Uint8Array,
    info: WriteInfo,
  ): Promise<number | Errno> {
    const writes = handle.writes!;
    if (info.answered === true) return this.#writeAnswered(node, handle, offset, data);
    const error = this.#writes.takeError([writes]);
    if (error !== undefined) return error;
    const rpc = await this.#via(node, handle);
    if (isErrno(rpc)) return rpc;
    if ((info.writeFlags & abi.FUSE_WRITE_KILL_SUIDGID) !== 0) {
      const killed = await this.#killSuidgid(ctx, node, handle, rpc);
      if (killed !== undefined) return killed;
    }
    writes.dirty = true;
    if (writesBehind(writes, info.flags)) return this.#writeBehind(node, handle, offset, data, rpc);
    this.#dataChanged(node, handle);
    this.#attrs.extend(node, offset + data.length);
    const params = { handle: handle.id, offset: BigInt(offset), data };
    const r = await rpc.write(params, this.#opts(ctx));
    if (!r.ok) return fail(r);
    return r.value <= data.length ? r.value : EIO; // more than sent: not an answer to this
  }

  /**
   * A write the kernel was told succeeded (`WriteInfo.answered`): queued at once when its
   * connection is up (before anything the kernel sent after it), else once it is; a failure is
   * kept for the handle's next flush or fsync.
   */
  #writeAnswered(node: Node, handle: Handle, offset: number, data: Uint8Array): Promise<number> {
    const writes = handle.writes!;
    writes.dirty = true;
    const now = this.#viaNow(handle);
    if (now !== undefined && !isErrno(now)) {
      return this.#writeBehind(node, handle, offset, data, now);
    }
    const late: Promise<number> = (async () => {
      const rpc = now ?? await this.#via(node, handle);
      if (!isErrno(rpc)) return await this.#writeBehind(node, handle, offset, data, rpc);
      writes.error ??= rpc;
      return data.length;
    })();
    this.#writes.track(writes, late);
    return late;
  }

  /** Queues a write answered before the satellite's answer (see write_behind.ts). */
  #writeBehind(
    node: Node,
    handle: Handle,
    offset: number,
    data: Uint8Array,
    rpc: RpcCalls,
  ): Promise<number> {
    this.#dataChanged(node, handle);
    this.#attrs.extend(node, offset + data.length);
    const params = { handle: handle.id, offset: BigInt(offset), data };
    return this.#writes.write(handle.writes!, params, rpc);
  }

  /**
   * A write by a caller without CAP_FSETID through a direct-I/O handle (the kernel then asks us
   * with FUSE_WRITE_KILL_SUIDGID; through the page cache it sends a SETATTR itself): clears
   * set-user-ID, and set-group-ID when group-executable, as the kernel's should_remove_suid().
   * The satellite writes as root, so the container's kernel would keep them.
   */
  async #killSuidgid(
    ctx: RequestContext,
    node: Node,
    handle: Handle,
    rpc: RpcCalls,
  ): Promise<Errno | undefined> {
    let attr = this.#attrs.attrOf(node);
    if (attr === undefined) {
      // Not cached (expired, or never asked): the mode decides, so ask the open file itself.
      if (handle.id === NO_HANDLE) return undefined;
      const r = await rpc.fstat({ handle: handle.id }, this.#opts(ctx));
      if (!r.ok) return fail(r);
      const checked = this.#attrResult(node, r.value);
      if (isErrno(checked)) return checked;
      attr = checked.attr;
    }
    let kill = attr.mode & S_ISUID;
    if ((attr.mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) kill |= S_ISGID;
    if (kill === 0) return undefined;
    const where = this.#where(node);
    if (isErrno(where)) return undefined; // unlinked: setattr names files by path
    const r = await this.#at(node, undefined, (w) =>
      rpc.setattr({
        ...w,
        handle: handle.id === NO_HANDLE ? undefined : handle.id,
        mode: attr.mode & 0o7777 & ~kill,
      }, this.#opts(ctx)), where);
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    const checked = this.#attrResult(node, r.value);
    return isErrno(checked) ? checked : undefined;
  }

  async flush(ctx: RequestContext, node: Node, handle: Handle): Promise<void | Errno> {
    const covered = this.#covered(handle);
    // close(dup(fd)) only reports deferred write errors: nothing to ask after no writes, nor
    // where a close reports none (then the attributes after the writes are asked behind it).
    if (!handle.writes?.dirty || handle.quietClose === true) {
      const written = handle.writes?.dirty === true;
      if (handle.writes !== undefined) handle.writes.dirty = false;
      await this.#writes.settle(covered);
      const error = this.#writes.takeError(covered, this.#lostOf(handle));
      if (error === undefined && written) this.#attrsAfterClose(node, handle);
      return error;
    }
    handle.writes.dirty = false;
    const rpc = await this.#via(node, handle);
    if (isErrno(rpc)) {
      await this.#writes.settle(covered);
      return this.#writes.takeError(covered, this.#lostOf(handle)) ?? rpc;
    }
    // Sent behind the pending writes (served in order): one round trip for both.
    const changes = this.#changes.count;
    const flushed = rpc.flush({ handle: handle.id }, this.#opts(ctx));
    await this.#writes.settle(covered);
    const r = await flushed;
    const error = this.#writes.takeError(covered, this.#lostOf(handle));
    if (error !== undefined) return error;
    if (!r.ok) return fail(r);
    // The file's attributes after its writes: a stat right after close needs no round trip.
    // Noted with the count from before the flush: any change since keeps them from serving.
    if (r.value !== undefined) {
      const attr = statProblem(r.value) ? undefined : statToAttr(r.value);
      this.#attrs.noteChanged(node.key, attr, changes);
    }
  }

  /**
   * Asks for the attributes of a file closed after writes without waiting for them: a stat right
   * after the close (tar's chown and utimens, make, editors) waits for that answer rather than
   * asking again; a close nobody stats after does not wait for it.
   */
  #attrsAfterClose(node: Node, handle: Handle): void {
    if (handle.id === NO_HANDLE || handle.gen !== this.#link.generation || !this.#link.up) return;
    // Noted with the count from before: any change since keeps them from serving.
    const changes = this.#changes.count;
    const key = node.key;
    const coming: Promise<void> = this.#link.on(handle.gen).fstat({ handle: handle.id }).then(
      (r) => {
        if (!r.ok || statProblem(r.value) !== undefined) return;
        this.#attrs.noteChanged(key, statToAttr(r.value), changes);
      },
      () => {},
    ).finally(() => {
      if (this.#attrsComing.get(key) === coming) this.#attrsComing.delete(key);
    });
    this.#attrsComing.set(key, coming);
  }

  async release(
    _ctx: RequestContext,
    node: Node,
    handle: Handle,
    _info: ReleaseInfo,
  ): Promise<void | Errno> {
    // Not cancellable: the satellite's handle must be closed whatever the caller does.
    this.#openFiles.remove(handle);
    if (handle.writes !== undefined) await this.#writes.release(handle.writes, node.path);
    return await this.#releaseHandle(handle);
  }

  /** Closes `handle`'s satellite handle, unless its satellite is gone (and closed it). */
  async #releaseHandle(handle: Handle): Promise<void | Errno> {
    if (handle.reopening !== undefined) await handle.reopening; // then it holds a descriptor
    if (handle.id === NO_HANDLE || handle.gen !== this.#link.generation || !this.#link.up) return;
    const r = await this.#link.on(handle.gen).release({ handle: handle.id });
    return r.ok ? undefined : fail(r);
  }

  async fsync(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    datasync: boolean,
  ): Promise<void | Errno> {
    const covered = this.#covered(handle);
    const rpc = await this.#via(_node, handle);
    if (isErrno(rpc)) {
      await this.#writes.settle(covered);
      return this.#writes.takeError(covered, handle.key) ?? rpc;
    }
    // Sent behind the pending writes (served in order): one round trip for both.
    const synced = rpc.fsync({ handle: handle.id, datasync }, this.#opts(ctx));
    await this.#writes.settle(covered);
    const r = await synced;
    const error = this.#writes.takeError(covered, handle.key);
    if (error !== undefined) return error;
    return r.ok ? undefined : fail(r);
  }

  async fallocate(
    ctx: RequestContext,
    node: Node,
    handle: Handle,
    offset: number,
    length: number,
    mode: number,
  ): Promise<void | Errno> {
    this.#dataChanged(node, handle);
    const rpc = await this.#via(node, handle);
    if (isErrno(rpc)) return rpc;
    const r = await rpc.fallocate(
      { handle: handle.id, mode, offset: BigInt(offset), length: BigInt(length) },
      this.#opts(ctx),
    );
    return r.ok ? undefined : fail(r);
  }

  async lseek(
    ctx: RequestContext,
    _node: Node,
    handle: Handle,
    offset: number,
    whence: number,
  ): Promise<number | Errno> {
    const rpc = await this.#via(_node, handle);
    if (isErrno(rpc)) return rpc;
    const r = await rpc.lseek(
      { handle: handle.id, offset: BigInt(offset), whence },
      this.#opts(ctx),
    );
    if (!r.ok) return fail(r);
    return r.value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(r.value) : EIO;
  }

  async copyFileRange(
    ctx: RequestContext,
    nodeIn: Node,
    handleIn: Handle,
    offsetIn: number,
    nodeOut: Node,
    handleOut: Handle,
    offsetOut: number,
    length: number,
    flags: number,
  ): Promise<number | Errno> {
    this.#dataChanged(nodeOut, handleOut);
    const rpcIn = await this.#via(nodeIn, handleIn);
    if (isErrno(rpcIn)) return rpcIn;
    const rpc = await this.#via(nodeOut, handleOut);
    if (isErrno(rpc)) return rpc;
    if (handleIn.gen !== handleOut.gen) return EIO; // reconnected in between: try again
    const r = await rpc.copyFileRange({
      handleIn: handleIn.id,
      offsetIn: BigInt(offsetIn),
      handleOut: handleOut.id,
      offsetOut: BigInt(offsetOut),
      length: BigInt(length),
      flags,
    }, this.#opts(ctx));
    if (!r.ok) return fail(r);
    if (r.value > BigInt(length)) return EIO; // more than asked: not an answer to this
    this.#attrs.extend(nodeOut, offsetOut + Number(r.value));
    return Number(r.value);
  }

  /** Fills `listing` from `entries` of directory `dir` (made by the satellite at `at`). */
  #fill(
    dir: Node,
    listing: DirListing,
    offset: number,
    entries: readonly WireDirEntry[],
    eof: boolean,
    plus: boolean,
    at: number = Date.now(),
    since?: number,
  ): boolean {
    // Read by the satellite before an event in the directory that was handled first (its frame
    // came right behind the answer): shown once, never kept for later lookups.
    const stale = since !== undefined && this.#live?.changedSince(dir, since) === true;
    const describe = (e: ShownEntry): Entry | undefined => {
      if (!plus || e.stat === undefined || statProblem(e.stat) !== undefined) return undefined;
      const entry = this.#entry(e.stat, dir, since);
      return isErrno(entry) ? undefined : entry;
    };
    const dropped = (e: WireDirEntry, reason: string): void => {
      if (typeof e.name !== "string") {
        // Names that are not UTF-8 cannot be looked up through the kernel's strings here.
        this.#warnOnce("utf8", "skipping directory entries whose names are not UTF-8");
      } else {
        this.#warnOnce("name", `skipping directory entries the kernel cannot take (${reason})`);
      }
    };
    const shown = listing.fill(offset, entries, eof, describe, dropped);
    // Names answer LOOKUPs only from a listing asked after the last change through the mount.
    if (!stale && listing.changesAt === this.#changes.count) {
      this.#attrs.noteListed(dir.key, listing, at, since);
    } else this.#attrs.forgetListedDir(dir.key);
    if (shown) listing.since = since;
    if (offset === 0) listing.madeAt ??= at;
    // Read whole with nothing changed through the mount since it was asked: absent names are so.
    if (
      !stale && eof && listing.complete && listing.madeAt !== undefined &&
      listing.changesAt === this.#changes.count
    ) {
      this.#attrs.noteComplete(dir.key, listing.names(), listing.madeAt);
    }
    return shown;
  }

  async opendir(ctx: RequestContext, node: Node): Promise<Opened<Handle> | Errno> {
    return this.#afterNotices(await this.#opendir(ctx, node));
  }

  async #opendir(ctx: RequestContext, node: Node): Promise<Opened<Handle> | Errno> {
    this.#see(node);
    const path = relPath(node);
    if (path === undefined) return ENOENT;
    // Taken before the wait: a change through the mount or an event while `take` resolves (the
    // walker drops its listings then, but not one already on its way here) makes it stale.
    const changesAt = this.#changes.mark();
    const sinceTake = this.#since();
    const ahead = await this.#ahead.take(node.key);
    if (ahead !== undefined && changesAt !== undefined && changesAt === this.#changes.count) {
      const { listing, since } = this.#fromAhead(node, path, ahead, changesAt, sinceTake);
      return {
        handle: { id: NO_HANDLE, gen: this.#link.generation, dir: true, key: node.key, listing },
        ...this.#dirCache(node, since),
      };
    }
    // The kernel keeps its listing: it may not need ours at all.
    const cached = this.#dirCache(node, this.#since());
    if (cached.cacheDir) {
      const gen = this.#link.generation;
      return { handle: { id: NO_HANDLE, gen, dir: true, key: node.key, lazy: true }, ...cached };
    }
    const opened = await this.#openDir(ctx, node, path);
    return isErrno(opened) ? opened : { handle: opened.handle, ...opened.cache };
  }

  /**
   * The listing a walk ahead brought, taken at `changesAt` (MountChanges.mark) and event `since`
   * before waiting for it: a change or event before that dropped it in the walker, one after is
   * seen by `#fill` (then its names answer no LOOKUP and are shown for this call only).
   */
  #fromAhead(
    node: Node,
    path: string,
    ahead: WalkedListing,
    changesAt: number | undefined,
    since: number,
  ): { listing: DirListing; since: number } {
    const listing = new DirListing();
    listing.changesAt = changesAt;
    listing.bufferAsked = changesAt;
    this.#fill(node, listing, 0, ahead.entries, true, true, ahead.at, since);
    this.#ahead.queue(node.key, path, ahead.entries);
    return { listing, since };
  }

  /**
   * Opens directory `node` at `path` on the satellite, with its first batch of entries; a whole
   * listing's subdirectories are walked ahead unless `ahead` is false (listed for LOOKUPs: a
   * walk ahead of everything below a directory where names are only looked up, the root's
   * after a cold `stat`, held up the changes made next).
   */
  async #openDir(
    ctx: RequestContext,
    node: Node,
    path: string,
    ahead = true,
  ): Promise<{ handle: Handle; cache: DirCache } | Errno> {
    // The first batch comes along (with attributes): a listing costs one round trip.
    const cur = await this.#current();
    if (isErrno(cur)) return cur;
    const changesAt = this.#changes.mark();
    const since = this.#since();
    const askedAt = Date.now();
    // A directory the kernel knows without a node handle gets one (the root needs none).
    const wanted = node.parent !== undefined && !this.#nodes.has(node.key);
    const r = await this.#at(node, undefined, (w) =>
      this.#holding(
        ctx,
        () => cur.rpc.opendir({ ...w, readAhead: READDIR_BATCH, node: wanted || undefined }),
        this.#orphan(cur.rpc),
      ));
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    if (r.value.node !== undefined) this.#nodes.issued(node.key, r.value.node);
    const handle: Handle = { id: r.value.handle, gen: cur.gen, dir: true, key: node.key };
    const { entries, eof } = r.value;
    if (entries !== undefined) {
      const listing = new DirListing();
      listing.changesAt = changesAt;
      listing.bufferAsked = changesAt;
      if (this.#fill(node, listing, 0, entries, eof === true, true, Date.now(), since)) {
        handle.listing = listing;
      }
      if (eof === true) {
        // Whole, and nothing changed through the mount or in the directory since it was asked.
        const kept = changesAt !== undefined && changesAt === this.#changes.count &&
          this.#live?.changedSince(node, since) !== true;
        this.#ahead.queue(node.key, path, entries, kept ? askedAt : undefined, ahead);
      }
    }
    return { handle, cache: this.#dirCache(node, since) };
  }

  /**
   * With the feed vouching for the directory, the kernel keeps its listing (FOPEN_CACHE_DIR):
   * a change in it drops that (the directory's pages) with its attributes.
   */
  #dirCache(node: Node, since: number): DirCache {
    // Marked reusable: the reader thread answers the next OPENDIR (and its RELEASEDIR).
    if (!this.#live?.listingCached(node, since)) return {};
    return { cacheDir: true, keepCache: true, reuse: this.#options.live?.timeout };
  }

  async readdir(
    ctx: RequestContext,
    node: Node,
    handle: Handle,
    offset: number,
    plus: boolean,
  ): Promise<DirEntry[] | Errno> {
    let listing = handle.listing ??= new DirListing();
    const stale = listing.since !== undefined && this.#live?.changedSince(node, listing.since);
    if (stale && offset === 0) {
      // Read at OPENDIR (no lock of the directory held), before an event in it handled since:
      // the kernel would keep those names (dentries, its cached listing) after the event's
      // notices. Read again under this READDIR, which the next event's notices wait for.
      listing = handle.listing = new DirListing();
      if (handle.id === NO_HANDLE) handle.lazy = true;
    }
    if (listing.end !== undefined && offset >= listing.end) return [];
    const index = offset - listing.bufferStart;
    if (index >= 0 && index < listing.buffer.length) {
      // Further on in a stream begun before the event: shown, but cached for this call only
      // (the kernel's cached listing, begun before the event, is dropped at its next start).
      const shown = this.#linkable(listing, listing.buffer.slice(index));
      return stale ? expired(shown) : shown;
    }
    if (handle.lazy === true) {
      // The kernel's cached listing did not answer: open the directory for real.
      const path = relPath(node);
      if (path === undefined) return ENOENT;
      const opened = await this.#openDir(ctx, node, path);
      if (isErrno(opened)) return opened;
      Object.assign(handle, opened.handle, { lazy: false });
      return this.readdir(ctx, node, handle, offset, plus);
    }
    if (handle.id === NO_HANDLE) return EINVAL; // a listing ahead is whole: not a position of it
    // Reopened after a reconnect, the directory's cookies (positions in it) still apply.
    const rpc = await this.#via(node, handle);
    if (isErrno(rpc)) return rpc;
    if (offset === 0 && listing.madeAt === undefined) listing.changesAt = this.#changes.mark();
    const since = this.#since();
    listing.bufferAsked = this.#changes.mark();
    for (let skipped = 0; skipped < MAX_SKIPPED_BATCHES; skipped++) {
      const cookie = listing.cookies[offset];
      if (cookie === undefined) return EINVAL; // not a position this stream produced
      const r = await rpc.readdir(
        { handle: handle.id, offset: cookie, plus, maxEntries: READDIR_BATCH },
        this.#opts(ctx),
      );
      if (!r.ok) return fail(r);
      if (
        this.#fill(node, listing, offset, r.value.entries, r.value.eof, plus, Date.now(), since)
      ) {
        return this.#linkable(listing, listing.buffer);
      }
      // Only unshowable names in this batch: continue after them.
      const last = r.value.entries.at(-1);
      if (last === undefined) return [];
      if (last.offset === cookie) break; // the satellite does not move on
      listing.cookies[offset] = last.offset;
    }
    this.#warnOnce("stuck", "a directory listing from the satellite does not move on");
    return EIO;
  }

  /**
   * `entries` of `listing`'s buffer as READDIRPLUS may show them: with their attributes only
   * while no change through the mount came since the batch was asked. After one, an entry's
   * inode may be gone and its number taken by another object: the kernel would link the name
   * to that object's node (or refuse it as a loop). Names only then (the kernel looks them up).
   */
  #linkable(listing: DirListing, entries: DirEntry[]): DirEntry[] {
    const asked = listing.bufferAsked;
    if (asked !== undefined && asked === this.#changes.count) return entries;
    return entries.map((e) => e.entry === undefined ? e : { ...e, entry: undefined });
  }

  releasedir(_ctx: RequestContext, _node: Node, handle: Handle): Promise<void | Errno> {
    return this.#releaseHandle(handle);
  }

  async fsyncdir(
    ctx: RequestContext,
    node: Node,
    handle: Handle,
    datasync: boolean,
  ): Promise<void | Errno> {
    if (handle.id !== NO_HANDLE) {
      const rpc = await this.#via(node, handle);
      if (isErrno(rpc)) return rpc;
      const r = await rpc.fsync({ handle: handle.id, datasync }, this.#opts(ctx));
      return r.ok ? undefined : fail(r);
    }
    // Opened from a listing fetched ahead: sync through a handle of its own.
    const where = this.#where(node);
    if (isErrno(where)) return where;
    const cur = await this.#current();
    if (isErrno(cur)) return cur;
    const opened = await this.#at(node, undefined, (w) =>
      this.#holding(
        ctx,
        () => cur.rpc.opendir(w),
        this.#orphan(cur.rpc),
      ));
    if (isErrno(opened)) return opened;
    if (!opened.ok) return fail(opened);
    const r = await cur.rpc.fsync({ handle: opened.value.handle, datasync }, this.#opts(ctx));
    this.#orphan(cur.rpc)(opened.value);
    return r.ok ? undefined : fail(r);
  }

  async statfs(ctx: RequestContext): Promise<StatFs | Errno> {
    const r = await this.#rpc.statfs({ path: "" }, this.#opts(ctx));
    if (!r.ok) return fail(r);
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
    const where = this.#where(node);
    if (isErrno(where)) return where;
    this.#attrs.forgetXattrs(node);
    this.#changed(node.parent, node.name, node);
    const r = await this.#at(
      node,
      undefined,
      (w) => this.#rpc.setxattr({ ...w, name, value, flags }, this.#opts(ctx)),
    );
    if (isErrno(r)) return r;
    return r.ok ? undefined : fail(r);
  }

  /** True when `node` has no xattrs (known, or renewed with one listxattr). */
  async #hasNoXattrs(ctx: RequestContext, node: Node): Promise<boolean> {
    const state = this.#attrs.noXattrs(node);
    if (state !== "expired") return state === "yes";
    this.#attrs.forgetXattrs(node);
    const r = await this.#at(node, undefined, (w) => this.#rpc.listxattr(w, this.#opts(ctx)));
    if (isErrno(r) || !r.ok || r.value.length > 0) return false;
    this.#attrs.noteXattrs(node, false);
    return true;
  }

  async getxattr(ctx: RequestContext, node: Node, name: string): Promise<Uint8Array | Errno> {
    const where = this.#where(node);
    if (isErrno(where)) return where;
    if (await this.#hasNoXattrs(ctx, node)) return ENODATA;
    const r = await this.#at(
      node,
      undefined,
      (w) => this.#rpc.getxattr({ ...w, name }, this.#opts(ctx)),
    );
    if (isErrno(r)) return r;
    return r.ok ? r.value : fail(r);
  }

  async listxattr(ctx: RequestContext, node: Node): Promise<string[] | Errno> {
    const where = this.#where(node);
    if (isErrno(where)) return where;
    if (this.#attrs.noXattrs(node) === "yes") return [];
    const r = await this.#at(node, undefined, (w) => this.#rpc.listxattr(w, this.#opts(ctx)));
    if (isErrno(r)) return r;
    if (!r.ok) return fail(r);
    // The kernel's list is NUL-separated: a name the satellite made up with a NUL would split.
    return r.value.filter((n): n is string =>
      typeof n === "string" && n !== "" && !n.includes("\0")
    );
  }

  async removexattr(ctx: RequestContext, node: Node, name: string): Promise<void | Errno> {
    const where = this.#where(node);
    if (isErrno(where)) return where;
    this.#attrs.forgetXattrs(node);
    this.#changed(node.parent, node.name, node);
    const r = await this.#at(
      node,
      undefined,
      (w) => this.#rpc.removexattr({ ...w, name }, this.#opts(ctx)),
    );
    if (isErrno(r)) return r;
    return r.ok ? undefined : fail(r);
  }
}
