/**
 * The change feed: one inotify instance, a watch per directory the client caches names or
 * attributes of, and change events sent to the client unasked (`eventSchema`).
 *
 * Invariants:
 * - A directory is watched before the state the client caches from it is read: the root when
 *   the feed starts; a directory found by `lstat` or in a listing is watched and then stat-ed
 *   again, and that fresh stat is what the client gets. So every change after a `WATCHED`
 *   notice (sent before the answer that carries the directory) is reported.
 * - A directory watch reports its entries' changes by name (IN_MODIFY, IN_ATTRIB…), so files
 *   need no watch of their own.
 * - A directory the client makes is watched at once and announced only if it is still empty
 *   once the watch is in place (else UNWATCHED follows): a client that sees it WATCHED in a
 *   mkdir's answer knows every name it has (none) until an event says otherwise.
 * - Directories on filesystems that send no events (proc, sysfs, network and FUSE
 *   filesystems…), and any beyond `maxWatches` or the kernel's limit, are not watched and never
 *   announced: the client keeps its short timeouts there.
 * - Echoes: events caused by a request of the client itself (its own create, write, chmod…)
 *   are dropped when they name what the request named; events pending before the request are
 *   sent first.
 * - Queue overflow is told as one OVERFLOW change; a watch dropped (directory deleted,
 *   filesystem unmounted, or the client's `unwatch`) as UNWATCHED, before the answer of the
 *   request that dropped it.
 *
 * @module
 */

import {
  type Change,
  ChangeKind,
  type EntryList,
  type Handlers,
  inodeKey,
  INVALID,
  MAX_CHANGES,
  OpenFlags,
  type PathArg,
  RECORD_BYTES,
  recordMode,
  RpcFailure,
  type Stat,
  statOfRecord,
  writeStat,
} from "../src/protocol/mod.ts";
import {
  ERRNO,
  IN_ATTRIB,
  IN_CLOEXEC,
  IN_CLOSE_WRITE,
  IN_CREATE,
  IN_DELETE,
  IN_DELETE_SELF,
  IN_EXCL_UNLINK,
  IN_IGNORED,
  IN_MODIFY,
  IN_MOVE_SELF,
  IN_MOVED_FROM,
  IN_MOVED_TO,
  IN_NONBLOCK,
  IN_ONLYDIR,
  IN_Q_OVERFLOW,
  INOTIFY_EVENT_BYTES,
  NAME_MAX,
  S_IFDIR,
  S_IFMT,
  UNWATCHABLE_FS_TYPES,
} from "../src/linux/mod.ts";
import { cString, type Libc, num } from "./libc.ts";
import type { Where } from "./paths.ts";

/** What the watcher needs of the filesystem side. */
export interface WatchFs {
  /** O_PATH descriptor of a directory beneath the root, or a positive errno. */
  openDirPath(w: Where): number;
  statOf(fd: number): Stat | RpcFailure;
  /** Whether the directory at `w` has no entries; undefined when it cannot be read. */
  emptyDir(w: Where): boolean | undefined;
  /**
   * Node handle `id`'s directory, if held: its identity (a watch key) and the name it had when
   * the handle was issued.
   */
  node(id: number): { identity?: string; name?: Uint8Array } | undefined;
  /** Sets what a `walk` calls with each directory it opens, before it reads the directory. */
  onWalkDir(hook: (fd: number) => void): void;
}

/** Where the watcher's frames go. */
export interface WatchOut {
  /** Queues an event frame for these changes (oldest first). */
  emit(changes: Change[]): void;
  /** Writes what is queued. */
  flush(): void;
}

/** Options of {@link Watcher}. */
export interface WatcherOptions {
  /** "/proc/self/fd" (watches are added through it); undefined: no feed. */
  procFd: string | undefined;
  /** Starts polling the inotify descriptor. */
  addSource: (fd: number, onReadable: () => void) => void;
  log: (message: string) => void;
}

const WATCH_MASK = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |
  IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR |
  IN_EXCL_UNLINK;
const READ_BYTES = 64 * 1024;
/**
 * A read that left at least this much of the buffer unused took every event queued then (the
 * kernel hands over whole events while the next one fits: at most a header and NAME_MAX + 1
 * bytes of name): no second read to find the queue empty.
 */
const READ_DRAINED_ROOM = INOTIFY_EVENT_BYTES + NAME_MAX + 1;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Requests naming what they change by path: their path-valued params. */
const PATH_CHANGES: Readonly<Record<string, readonly string[]>> = {
  create: ["path"],
  mkdir: ["path"],
  mknod: ["path"],
  symlink: ["path"],
  link: ["from", "to"],
  unlink: ["path"],
  rmdir: ["path"],
  rename: ["from", "to"],
  setattr: ["path"],
  truncate: ["path"],
  chmod: ["path"],
  chown: ["path"],
  utimens: ["path"],
  setxattr: ["path"],
  removexattr: ["path"],
};
/** Requests changing an open file: their handle-valued params. */
const HANDLE_CHANGES: Readonly<Record<string, readonly string[]>> = {
  write: ["handle"],
  ftruncate: ["handle"],
  fallocate: ["handle"],
  copyFileRange: ["handleOut"],
  flush: ["handle"],
  fsync: ["handle"],
  release: ["handle"],
};

/** Events a request of the client causes itself: names in directories, directories' own. */
interface Echo {
  readonly names: Set<string>;
  /** Watch keys (identities) of directories changed by their node handle. */
  readonly selves: Set<string>;
}

/** The feed's own methods. */
const FEED_METHODS: ReadonlySet<string> = new Set(["watch", "unwatch"]);

function isDir(stat: Stat): boolean {
  return (stat.mode & S_IFMT) === S_IFDIR;
}

/** The last component of a protocol path, as the name inotify reports ("" for the root). */
function baseName(path: PathArg): string {
  const text = typeof path === "string" ? path : nameText(path);
  return text.slice(text.lastIndexOf("/") + 1);
}

/** A name as a string (bytes that are not UTF-8: latin1, only for matching). */
function nameText(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    return String.fromCharCode(...bytes);
  }
}

function childPath(dir: PathArg, name: PathArg): PathArg {
  if (typeof dir === "string" && typeof name === "string") {
    return dir === "" ? name : `${dir}/${name}`;
  }
  const enc = new TextEncoder();
  const d = typeof dir === "string" ? enc.encode(dir) : dir;
  const n = typeof name === "string" ? enc.encode(name) : name;
  if (d.length === 0) return n;
  const out = new Uint8Array(d.length + 1 + n.length);
  out.set(d);
  out[d.length] = 0x2f;
  out.set(n, d.length + 1);
  return out;
}

/** The change feed of one satellite. */
export class Watcher {
  readonly #c: Libc;
  readonly #fs: WatchFs;
  readonly #out: WatchOut;
  readonly #options: WatcherOptions;
  #fd = -1;
  #max = 0;
  readonly #wdOf = new Map<string, number>();
  readonly #keyOf = new Map<number, string>();
  /** Watches removed at the client's request: their IN_IGNORED is not news. */
  readonly #removing = new Set<number>();
  /** Names of open files by handle (for echo suppression of handle requests). */
  readonly #handleNames = new Map<number, string>();
  /** Changes to send with the next frame. */
  #pending: Change[] = [];
  readonly #buf = new Uint8Array(READ_BYTES);
  readonly #statfsBuf = new Uint8Array(128);
  #limitLogged = false;
  #rootKey: string | undefined;

  constructor(libc: Libc, fs: WatchFs, out: WatchOut, options: WatcherOptions) {
    this.#c = libc;
    this.#fs = fs;
    this.#out = out;
    this.#options = options;
  }

  /** True once the feed runs. */
  get enabled(): boolean {
    return this.#fd >= 0;
  }

  /** Directories watched. */
  get watches(): number {
    return this.#keyOf.size;
  }

  /** `handlers` with the feed's methods and hooks added. */
  wrap(handlers: Handlers): Handlers {
    const h = { ...handlers } as unknown as Record<string, (p: Record<string, unknown>) => unknown>;
    h.watch = (p) => this.#enable(p.maxWatches as number);
    h.unwatch = (p) => this.#unwatch(p.dirs as string[]);
    const lstat = h.lstat;
    h.lstat = (p) => {
      const r = lstat(p);
      if (!this.enabled || r instanceof RpcFailure || !isDir(r as Stat)) return r;
      return this.#watchStat(p as unknown as Where, r as Stat);
    };
    const lookup = h.lookup;
    h.lookup = (p) => {
      const r = lookup(p) as { stat: Stat; node?: number } | RpcFailure;
      if (!this.enabled || r instanceof RpcFailure || !isDir(r.stat)) return r;
      return { ...r, stat: this.#watchStat(p as unknown as Where, r.stat) };
    };
    // A walk watches each directory before reading it (see #watchWalked). The WATCHED notices
    // these hooks queue go out ahead of the answer, with the events (the drain below).
    this.#fs.onWalkDir((fd) => this.#watchWalked(fd));
    for (const method of ["opendir", "readdir"]) {
      const list = h[method];
      h[method] = (p) => {
        const r = list(p) as { entries?: EntryList } | RpcFailure;
        if (!this.enabled || r instanceof RpcFailure || r.entries === undefined) return r;
        const dir = method === "opendir"
          ? p as unknown as Where
          : this.#dirPaths.get(p.handle as number);
        if (dir === undefined) return r;
        const { names, records } = r.entries;
        const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
        for (let i = 0; i < names.length; i++) {
          const at = i * RECORD_BYTES;
          const mode = recordMode(view, at);
          if (mode === undefined || (mode & S_IFMT) !== S_IFDIR) continue;
          const stat = statOfRecord(view, at);
          if (stat === INVALID) continue;
          const now = this.#watchStat({ at: dir.at, path: childPath(dir.path, names[i]) }, stat);
          if (now !== stat) writeStat(view, at, now);
        }
        return r;
      };
    }
    // A directory made by the client: watched, and kept watched only if still empty once the
    // watch is in place (see the module's invariants). Its own echo is dropped as for any mkdir.
    const mkdir = h.mkdir;
    h.mkdir = (p) => {
      const r = mkdir(p);
      if (!this.enabled || r instanceof RpcFailure) return r;
      const made = r as { stat: Stat; dir?: Stat };
      const stat = this.#watchStat(p as unknown as Where, made.stat);
      const key = inodeKey(stat);
      if (this.#wdOf.has(key) && this.#fs.emptyDir(p as unknown as Where) !== true) {
        this.#dropWatch(key);
      }
      return { ...made, stat };
    };
    for (const [method, keys] of Object.entries(PATH_CHANGES)) {
      const op = h[method];
      h[method] = (p) => this.#echoFree(() => op(p), this.#echoOf(p, keys));
    }
    for (const [method, keys] of Object.entries(HANDLE_CHANGES)) {
      const op = h[method];
      h[method] = (p) => {
        const names = keys.map((k) => this.#handleNames.get(p[k] as number))
          .filter((n): n is string => n !== undefined);
        const r = this.#echoFree(() => op(p), { names: new Set(names), selves: new Set() });
        if (method === "release") {
          this.#handleNames.delete(p.handle as number);
          this.#dirPaths.delete(p.handle as number);
        }
        return r;
      };
    }
    // Remember what open files and directories are called.
    const open = h.open;
    h.open = (p) => {
      const opened = () => this.#named(open(p), p.path as PathArg);
      // An open with O_TRUNC changes the file: that event is the client's own too.
      return (p.flags as number) & OpenFlags.O_TRUNC
        ? this.#echoFree(opened, this.#echoOf(p, ["path"]))
        : opened();
    };
    const create = h.create;
    h.create = (p) => this.#named(create(p), p.path as PathArg);
    const opendir = h.opendir;
    h.opendir = (p) => {
      const r = opendir(p);
      if (this.enabled && !(r instanceof RpcFailure)) {
        this.#dirPaths.set((r as { handle: number }).handle, {
          at: p.at as number | undefined,
          path: p.path as PathArg,
        });
      }
      return r;
    };
    // Every other answer goes out after the events queued when it was read: a client that sees
    // a state has been told of every change before it (a listing without a removed name never
    // arrives before the removal's event, which drops the kernel's dentry of that name).
    for (const method of Object.keys(h)) {
      if (method in PATH_CHANGES || method in HANDLE_CHANGES || FEED_METHODS.has(method)) continue;
      const op = h[method];
      h[method] = (p) => {
        const r = op(p);
        this.drain(false);
        return r;
      };
    }
    return h as unknown as Handlers;
  }

  /** Paths of open directories (their listings' subdirectories are watched). */
  readonly #dirPaths = new Map<number, Where>();

  #named(r: unknown, path: PathArg): unknown {
    if (this.enabled && !(r instanceof RpcFailure)) {
      this.#handleNames.set((r as { handle: number }).handle, baseName(path));
    }
    return r;
  }

  /**
   * The echoes a request changing its path params `keys` causes: each path's last name in its
   * directory's watch; a node handle's own directory (an empty path) by the name it had when the
   * handle was issued, and in its own watch (a "self" event) by its identity.
   */
  #echoOf(p: Record<string, unknown>, keys: readonly string[]): Echo {
    const echo: Echo = { names: new Set(), selves: new Set() };
    for (const key of keys) {
      const name = baseName(p[key] as PathArg);
      const at = p[key === "path" ? "at" : `${key}At`] as number | undefined;
      const node = name === "" && at !== undefined ? this.#fs.node(at) : undefined;
      if (node?.identity !== undefined) echo.selves.add(node.identity);
      echo.names.add(node?.name !== undefined ? nameText(node.name) : name);
    }
    return echo;
  }

  /** Runs a request that changes `names`, without echoing its own events. */
  #echoFree(op: () => unknown, echo: Echo): unknown {
    if (!this.enabled) return op();
    this.drain(false);
    const r = op();
    this.#read(echo);
    this.#send();
    return r;
  }

  #enable(maxWatches: number): { root?: string } | RpcFailure {
    if (this.enabled) {
      this.#max = maxWatches;
      return { root: this.#rootKey };
    }
    if (this.#options.procFd === undefined) {
      return new RpcFailure("EOPNOTSUPP", "no /proc: the change feed needs /proc/self/fd");
    }
    const fd = this.#c.fn.inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
      const errno = this.#c.errno();
      this.#options.log(`change feed: cannot create an inotify instance: errno ${errno}`);
      return new RpcFailure(errno === ERRNO.EMFILE ? "EMFILE" : "EOPNOTSUPP", "no inotify");
    }
    this.#fd = fd;
    this.#max = maxWatches;
    this.#options.addSource(fd, () => this.drain(true));
    const root = this.#fs.openDirPath({ path: "" });
    if (root >= 0) {
      const st = this.#fs.statOf(root);
      this.#c.fn.close(root);
      if (!(st instanceof RpcFailure)) {
        const key = inodeKey(this.#watchStat({ path: "" }, st));
        if (this.#wdOf.has(key)) this.#rootKey = key;
      }
    }
    this.#send();
    return { root: this.#rootKey };
  }

  #unwatch(dirs: string[]): null {
    for (const key of dirs) this.#dropWatch(key);
    this.#send();
    return null;
  }

  /** Removes the watch of directory `key`, if any; UNWATCHED is queued. */
  #dropWatch(key: string): void {
    const wd = this.#wdOf.get(key);
    if (wd === undefined) return;
    this.#wdOf.delete(key);
    this.#keyOf.delete(wd);
    this.#removing.add(wd);
    this.#c.fn.inotify_rm_watch(this.#fd, wd);
    // In order with WATCHED notices: a later request may watch it again.
    this.#pending.push({ dir: key, what: ChangeKind.UNWATCHED });
  }

  /**
   * Watches the directory at `path` whose attributes are `stat` (read before the watch); returns
   * the attributes to answer: read again after the watch was added, when it was.
   */
  #watchStat(w: Where, stat: Stat): Stat {
    const key = inodeKey(stat);
    if (this.#wdOf.has(key)) return stat;
    if (this.#keyOf.size >= this.#max) {
      this.#limit(`the watch limit (${this.#max})`);
      return stat;
    }
    const fd = this.#fs.openDirPath(w);
    if (fd < 0) return stat;
    try {
      return this.#addWatch(fd, stat, w.at === undefined && w.path === "");
    } finally {
      this.#c.fn.close(fd);
    }
  }

  /**
   * Watches the directory a walk opened as `fd`, before the walk reads it: what the walk then
   * reads is as new as the watch, so the client may cache it as long as the watch lasts.
   */
  #watchWalked(fd: number): void {
    if (!this.enabled) return;
    const stat = this.#fs.statOf(fd);
    if (stat instanceof RpcFailure || this.#wdOf.has(inodeKey(stat))) return;
    if (this.#keyOf.size >= this.#max) return this.#limit(`the watch limit (${this.#max})`);
    this.#addWatch(fd, stat, false);
  }

  /** Adds the watch of open directory `fd` (its Stat read before); the Stat as of the watch. */
  #addWatch(fd: number, stat: Stat, root: boolean): Stat {
    const key = inodeKey(stat);
    if (num(this.#c.fn.fstatfs(fd, this.#statfsBuf)) === 0) {
      const type = new DataView(this.#statfsBuf.buffer).getUint32(0, true);
      if (UNWATCHABLE_FS_TYPES.has(type)) return stat;
    }
    const wd = this.#c.fn.inotify_add_watch(
      this.#fd,
      cString(`${this.#options.procFd}/${fd}`)!,
      WATCH_MASK,
    );
    if (wd < 0) {
      const errno = this.#c.errno();
      if (errno === ERRNO.ENOSPC) this.#limit("the kernel's limit (max_user_watches)");
      return stat;
    }
    const fresh = this.#fs.statOf(fd);
    const now = fresh instanceof RpcFailure ? stat : { ...fresh, hasXattrs: stat.hasXattrs };
    const nowKey = inodeKey(now);
    const old = this.#keyOf.get(wd);
    if (old !== undefined && old !== nowKey) this.#wdOf.delete(old);
    this.#keyOf.set(wd, nowKey);
    this.#wdOf.set(nowKey, wd);
    this.#removing.delete(wd);
    this.#pending.push({ dir: nowKey, what: ChangeKind.WATCHED, ...(root ? { name: "" } : {}) });
    // Another directory at that path by now (renamed meanwhile): watched, but not this one.
    return nowKey === key ? now : stat;
  }

  #limit(what: string): void {
    if (this.#limitLogged) return;
    this.#limitLogged = true;
    this.#options.log(`change feed: ${what} reached; further directories use short timeouts`);
  }

  /** Reads every queued event and sends them (`flush`: write them out now). */
  drain(flush: boolean): void {
    if (!this.enabled) return;
    this.#read(undefined);
    this.#send();
    if (flush) this.#out.flush();
  }

  /** Reads queued events into `#pending`, dropping those naming `echo` (a request's own). */
  #read(echo: Echo | undefined): void {
    for (;;) {
      const n = num(this.#c.fn.read(this.#fd, this.#buf, BigInt(this.#buf.length)));
      if (n <= 0) {
        if (n < 0 && this.#c.errno() === ERRNO.EINTR) continue;
        return;
      }
      this.#parse(n, echo);
      if (n <= this.#buf.length - READ_DRAINED_ROOM) return;
    }
  }

  #parse(n: number, echo: Echo | undefined): void {
    const v = new DataView(this.#buf.buffer);
    let at = 0;
    while (at + INOTIFY_EVENT_BYTES <= n) {
      const wd = v.getInt32(at, true);
      const mask = v.getUint32(at + 4, true);
      const len = v.getUint32(at + 12, true);
      let end = at + INOTIFY_EVENT_BYTES;
      const limit = Math.min(end + len, n);
      while (end < limit && this.#buf[end] !== 0) end++;
      const raw = this.#buf.subarray(at + INOTIFY_EVENT_BYTES, end);
      at += INOTIFY_EVENT_BYTES + len;
      if (mask & IN_Q_OVERFLOW) {
        this.#pending.push({ dir: "", what: ChangeKind.OVERFLOW });
        continue;
      }
      const key = this.#keyOf.get(wd);
      if (mask & IN_IGNORED) {
        if (this.#removing.delete(wd) || key === undefined) continue;
        this.#keyOf.delete(wd);
        if (this.#wdOf.get(key) === wd) this.#wdOf.delete(key);
        this.#pending.push({ dir: key, what: ChangeKind.UNWATCHED });
        continue;
      }
      if (key === undefined) continue;
      if (raw.length === 0) {
        if (echo?.selves.has(key) && !(mask & (IN_DELETE_SELF | IN_MOVE_SELF))) continue;
        if (mask & (IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_MODIFY)) {
          this.#pending.push({ dir: key, what: ChangeKind.SELF });
        }
        continue;
      }
      let name: string | Uint8Array;
      try {
        name = decoder.decode(raw);
      } catch {
        name = raw.slice();
      }
      if (echo?.names.has(typeof name === "string" ? name : nameText(name))) {
        continue;
      }
      let what = 0;
      if (mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) what |= ChangeKind.NAME;
      if (mask & IN_ATTRIB) what |= ChangeKind.ATTR;
      if (mask & (IN_MODIFY | IN_CLOSE_WRITE)) what |= ChangeKind.DATA;
      if (what !== 0) this.#pending.push({ dir: key, name, what });
    }
  }

  /** Queues the pending changes as event frames (merged per directory and name). */
  #send(): void {
    if (this.#pending.length === 0) return;
    const merged = new Map<string, Change>();
    const order: Change[] = [];
    for (const c of this.#pending) {
      // WATCHED/UNWATCHED/OVERFLOW keep their order relative to each other.
      if (c.what & (ChangeKind.WATCHED | ChangeKind.UNWATCHED | ChangeKind.OVERFLOW)) {
        order.push(c);
        continue;
      }
      const id = `${c.dir}\0${
        typeof c.name === "string" ? c.name : c.name ? nameText(c.name) : ""
      }`;
      const seen = merged.get(id);
      if (seen !== undefined) {
        seen.what |= c.what;
      } else {
        const copy = { ...c };
        merged.set(id, copy);
        order.push(copy);
      }
    }
    this.#pending = [];
    for (let i = 0; i < order.length; i += MAX_CHANGES) {
      this.#out.emit(order.slice(i, i + MAX_CHANGES));
    }
  }
}
