/**
 * The live view: the satellite's change feed turned into kernel cache invalidations, and the
 * cache timeouts the feed vouches for.
 *
 * Invariants:
 * - A directory is "watched" from the satellite's WATCHED notice for it until its UNWATCHED,
 *   the kernel forgetting it, an overflow or a reconnect. Only there do names and attributes
 *   get the long timeout: entries of a watched directory (a subdirectory only when it is
 *   watched itself, a file only on the directory's device: a file mounted from elsewhere sends
 *   its events elsewhere), and the attributes of a watched directory.
 * - An answer read by the satellite before a change but handled after that change's event
 *   (events are counted: `seq`) is given timeout 0: the kernel uses it for that one call and asks
 *   again next time. So an event never lets an older state stay cached after it.
 * - Every change drops what the kernel cached of it (entry, attributes, data pages, a
 *   directory's cached listing) and the client's own caches (`LocalCaches.dropped`).
 * - An overflow or a dropped watch drops everything cached that it may concern.
 *
 * @module
 */

import type { FuseSession, Logger, Node } from "../fuse/mod.ts";
import { type Change, ChangeKind } from "../protocol/mod.ts";

/** The kernel caches the view drops entries from (a FUSE session's, declared there). */
export type KernelCaches = Pick<
  FuseSession,
  "invalidateEntry" | "invalidateInode" | "storeData" | "nodeOf" | "childOf" | "knownNodes"
>;

/** The client's own caches, keyed like nodes ("" is the root). */
export interface LocalCaches {
  /**
   * `name` in directory `dirKey` (or the directory itself) changed; `child` its node; `what` the
   * event's `ChangeKind` bits (undefined: anything may have changed, the watch was dropped).
   */
  dropped(
    dirKey: string,
    name: string | undefined,
    child: Node | undefined,
    what: number | undefined,
  ): void;
  /** Everything may have changed. */
  droppedAll(): void;
}

/**
 * Whether a change of `what` (`ChangeKind` bits; undefined: unknown) may have set or removed an
 * extended attribute: anything but a change of contents alone (xattrs change with an attribute
 * event; a write can only remove security.capability).
 */
export function xattrsMayChange(what: number | undefined): boolean {
  return what === undefined || (what & ~ChangeKind.DATA) !== 0;
}

/** Options of {@link LiveView}. Timeouts in seconds. */
export interface LiveOptions {
  /** Timeout of names and attributes the feed vouches for (0: the timeouts below). */
  longTimeout: number;
  /** Timeouts elsewhere (the mount's options). */
  entryTimeout: number;
  attrTimeout: number;
  /** Directories asked to be unwatched (the kernel forgot them). */
  unwatch: (dirs: string[]) => void;
  local: LocalCaches;
  logger: Logger;
  /** Log every event and invalidation at debug level. */
  debug?: boolean;
}

/** Timeouts of one entry answer. */
export interface Timeouts {
  entry: number;
  attr: number;
}

/** Most directories whose last event is remembered; beyond, answers in flight get timeout 0. */
const LAST_EVENTS_LIMIT = 65536;
/** Most names given a long negative timeout at once; beyond, "no such name" gets the short one. */
const NEGATIVES_LIMIT = 16384;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The satellite's directory keys → what the kernel and the client cache. */
/** Longest an answer waits for the kernel to take the notices before it. */
const NOTICE_WAIT_MS = 250;

export class LiveView {
  readonly #options: LiveOptions;
  #kernel: KernelCaches | undefined;
  /** The root's key on the satellite ("" until the feed started). */
  #rootKey = "";
  readonly #watched = new Set<string>();
  #seq = 0;
  /** `seq` of the last event about each directory. */
  readonly #lastEvent = new Map<string, number>();
  /** `seq` of the last event about everything (overflow, reset). */
  #allAt = 0;
  #unwatching: string[] = [];
  /**
   * Names the kernel was told are absent for the long timeout, by directory key: a dropped
   * watch or an overflow must drop those negative entries (an event naming one drops it anyway).
   */
  readonly #negatives = new Map<string, Set<string>>();
  #negativeCount = 0;

  constructor(options: LiveOptions) {
    this.#options = options;
  }

  /** Events counted so far: take it before a request whose answer may be cached. */
  get seq(): number {
    return this.#seq;
  }

  /** Directories watched now. */
  get watched(): number {
    return this.#watched.size;
  }

  /** The kernel caches to invalidate (the FUSE session, once mounted). */
  attach(kernel: KernelCaches): void {
    this.#kernel = kernel;
  }

  /** The feed (re)started; `rootKey` is the root's key on the satellite. */
  started(rootKey: string | undefined): void {
    this.#rootKey = rootKey ?? "";
  }

  /**
   * The satellite was replaced (reconnect): events of the gap are lost, so nothing watched is
   * vouched for and everything the kernel caches is dropped.
   */
  reset(): void {
    this.#watched.clear();
    this.#dropAllNegatives();
    this.#rootKey = "";
    this.#all("reconnected");
  }

  /** The satellite's key of `node`'s object. */
  #keyOf(node: Node): string {
    return node.key === "" ? this.#rootKey : node.key;
  }

  /** True when `dirKey` is watched and had no event since `since`. */
  #fresh(dirKey: string, since: number): boolean {
    return dirKey !== "" && this.#watched.has(dirKey) && !this.#changedSince(dirKey, since);
  }

  #changedSince(dirKey: string, since: number): boolean {
    return this.#allAt > since || (this.#lastEvent.get(dirKey) ?? 0) > since;
  }

  /** True when the directory `dir` had an event (or everything was dropped) after `since`. */
  changedSince(dir: Node, since: number): boolean {
    return this.#changedSince(this.#keyOf(dir), since);
  }

  /** Notices to the kernel not yet taken (each ends when the kernel has done it). */
  readonly #notices = new Set<Promise<unknown>>();

  /** Whether notices sent to the kernel are not all taken yet (see `settled`). */
  get noticesOut(): boolean {
    return this.#notices.size > 0;
  }

  #track(notice: Promise<boolean>): void {
    const settled = notice.catch(() => false).finally(() => this.#notices.delete(settled));
    this.#notices.add(settled);
  }

  /**
   * Resolves once the notices sent so far are taken (at most NOTICE_WAIT_MS: a notice can wait
   * for a request in progress); undefined when none is out. An answer that shows a state after
   * an event waits for it, so a process never sees the new state and then a stale cached one.
   * Only for requests that hold no lock a notice needs (OPENDIR, OPEN, GETATTR): an entry notice
   * takes its directory's lock, which LOOKUP and READDIR hold while they wait, and a data notice
   * the pages a READ is filling.
   */
  settled(): Promise<void> | undefined {
    if (this.#notices.size === 0) return undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      Promise.allSettled([...this.#notices]).then(() => {}),
      new Promise<void>((resolve) => timer = setTimeout(resolve, NOTICE_WAIT_MS)),
    ]).finally(() => clearTimeout(timer));
  }

  /**
   * Drops the kernel's pages of `node` again: data read before an event that was handled first
   * (the notice waits for the pages the kernel is filling from that answer, then drops them).
   */
  dropData(node: Node): void {
    if (this.#kernel !== undefined) this.#inval(node, 0, "data read before a change");
  }

  /** Timeouts of an entry of `parent` for an object (`key`, a directory or not, on `dev`). */
  entry(parent: Node, key: string, dir: boolean, dev: string, since: number): Timeouts {
    const parentKey = this.#keyOf(parent);
    if (this.#changedSince(parentKey, since) || (dir && this.#changedSince(key, since))) {
      return { entry: 0, attr: 0 };
    }
    const o = this.#options;
    if (!this.#fresh(parentKey, since)) return { entry: o.entryTimeout, attr: o.attrTimeout };
    const vouched = dir ? this.#fresh(key, since) : parentKey.startsWith(dev);
    return {
      entry: o.longTimeout > 0 ? o.longTimeout : o.entryTimeout,
      attr: vouched && o.longTimeout > 0 ? o.longTimeout : o.attrTimeout,
    };
  }

  /**
   * Timeout of "no such name" for `name` in `parent`, known after event `since` (asked after it,
   * or held in a listing read under the watch): the long one while the feed vouches for the
   * directory, else undefined (the mount's negative timeout). Then the kernel keeps the negative
   * entry until an event names it, the watch is dropped or the feed overflows.
   */
  negative(parent: Node, name: string, since: number): number | undefined {
    const key = this.#keyOf(parent);
    const long = this.#options.longTimeout;
    if (long <= 0 || !this.#fresh(key, since)) return undefined;
    let names = this.#negatives.get(key);
    if (names?.has(name)) return long;
    if (this.#negativeCount >= NEGATIVES_LIMIT) return undefined;
    if (names === undefined) this.#negatives.set(key, names = new Set());
    names.add(name);
    this.#negativeCount++;
    return long;
  }

  /** Drops every negative entry noted (a reconnect, an overflow). */
  #dropAllNegatives(): void {
    for (const key of [...this.#negatives.keys()]) this.#dropNegatives(key, true);
  }

  /** Forgets the negative entries noted in directory `key`, telling the kernel when `drop`. */
  #dropNegatives(key: string, drop: boolean): void {
    const names = this.#negatives.get(key);
    if (names === undefined) return;
    this.#negatives.delete(key);
    this.#negativeCount -= names.size;
    const kernel = this.#kernel;
    const dir = drop ? kernel?.nodeOf(this.#nodeKey(key)) : undefined;
    if (kernel === undefined || dir === undefined) return;
    for (const name of names) this.#track(kernel.invalidateEntry(dir, name));
  }

  /** Attribute timeout of `node` (a directory or not, on `dev`) answered from `since`. */
  attr(node: Node, dir: boolean, dev: string, since: number): number {
    const key = this.#keyOf(node);
    const parentKey = node.parent === undefined ? undefined : this.#keyOf(node.parent);
    if (
      (dir && this.#changedSince(key, since)) ||
      (parentKey !== undefined && this.#changedSince(parentKey, since))
    ) return 0;
    const vouched = dir
      ? this.#fresh(key, since)
      : parentKey !== undefined && this.#fresh(parentKey, since) && parentKey.startsWith(dev);
    const o = this.#options;
    return vouched && o.longTimeout > 0 ? o.longTimeout : o.attrTimeout;
  }

  /**
   * True when the kernel's cached attributes and pages of file `node` are current: its
   * directory is watched, on its device, and nothing changed there since the last answer.
   */
  fileVouched(node: Node): boolean {
    const parent = node.parent;
    if (parent === undefined || this.#options.longTimeout <= 0) return false;
    const parentKey = this.#keyOf(parent);
    const dev = node.key.slice(0, node.key.lastIndexOf(":") + 1);
    return dev !== "" && parentKey.startsWith(dev) && this.#fresh(parentKey, this.#seq);
  }

  /**
   * True while directory `key` (a node's key: "" is the root) is watched. What the client holds
   * of it from before is current as long as no event dropped it (see `LocalCaches`).
   */
  watches(key: string): boolean {
    const dirKey = key === "" ? this.#rootKey : key;
    return dirKey !== "" && this.#watched.has(dirKey);
  }

  /** True when the kernel may keep `dir`'s listing (watched, nothing changed since `since`). */
  listingCached(dir: Node, since: number): boolean {
    return this.#fresh(this.#keyOf(dir), since);
  }

  /**
   * The kernel forgot `node`: its watch is no longer needed. It stays vouched for until the
   * satellite's UNWATCHED, in order with a WATCHED of a new lookup of the same directory.
   */
  forget(node: Node): void {
    const key = this.#keyOf(node);
    this.#dropNegatives(key, false); // the kernel dropped its children before it
    if (node.key === "" || !this.#watched.has(key)) return;
    if (this.#unwatching.push(key) === 1) {
      queueMicrotask(() => {
        const dirs = this.#unwatching;
        this.#unwatching = [];
        this.#options.unwatch(dirs);
      });
    }
  }

  /** Applies the satellite's changes, oldest first. */
  onChanges(changes: readonly Change[]): void {
    for (const c of changes) {
      if (c.what & ChangeKind.OVERFLOW) {
        this.#all("the satellite's event queue overflowed");
        continue;
      }
      if (c.what & ChangeKind.WATCHED) {
        if (c.name === "") this.#rootKey = c.dir; // the root: known before `watch` answers
        this.#watched.add(c.dir);
        continue;
      }
      this.#seq++;
      if (this.#lastEvent.size >= LAST_EVENTS_LIMIT) {
        this.#lastEvent.clear();
        this.#allAt = this.#seq;
      }
      this.#lastEvent.set(c.dir, this.#seq);
      if (c.what & ChangeKind.UNWATCHED) {
        this.#watched.delete(c.dir);
        this.#lastEvent.delete(c.dir);
        this.#unwatched(c.dir);
        continue;
      }
      this.#change(c);
    }
  }

  #debug(message: string): void {
    if (this.#options.debug) this.#options.logger.debug(`live: ${message}`);
  }

  #nodeKey(dirKey: string): string {
    return dirKey === this.#rootKey ? "" : dirKey;
  }

  #change(c: Change): void {
    const kernel = this.#kernel;
    const dirKey = this.#nodeKey(c.dir);
    const dir = kernel?.nodeOf(dirKey);
    let name: string | undefined;
    if (c.name !== undefined) {
      try {
        name = typeof c.name === "string" ? c.name : decoder.decode(c.name);
      } catch {
        name = undefined; // not UTF-8: never shown through the mount
      }
      if (name === undefined || name === "" || name.includes("/") || name.includes("\0")) {
        return;
      }
    }
    const child = dir !== undefined && name !== undefined ? kernel!.childOf(dir, name) : undefined;
    const what = describe(c.what);
    this.#debug(
      `${what} ${dir?.path ?? `dir ${c.dir}`}${
        name === undefined ? "" : ` ${JSON.stringify(name)}`
      }`,
    );
    this.#options.local.dropped(dirKey, name, child, c.what);
    if (kernel === undefined || dir === undefined) return;
    if (name === undefined) {
      this.#inval(dir, 0, "inode+data");
      return;
    }
    if (c.what & ChangeKind.NAME) {
      const negatives = this.#negatives.get(c.dir);
      if (negatives?.delete(name)) this.#negativeCount--;
      this.#debug(`invalidate entry ${dir.path ?? dir.key}/${name}`);
      this.#track(kernel.invalidateEntry(dir, name));
      this.#inval(dir, 0, "listing");
    }
    if (child !== undefined) {
      // A name's change drops its data too: a symlink's cached target, a reused inode number.
      if (c.what & (ChangeKind.DATA | ChangeKind.NAME)) {
        this.#inval(child, 0, "inode+data", !xattrsMayChange(c.what));
      } else this.#inval(child, -1, "attributes");
    }
  }

  #inval(node: Node, offset: number, what: string, xattrsKept = false): void {
    this.#debug(`invalidate ${what} of ${node.path ?? node.key}`);
    this.#track(this.#kernel!.invalidateInode(node, offset, 0, xattrsKept));
  }

  /** A watch was dropped: what the kernel caches below that directory is no longer vouched for. */
  #unwatched(dirKey: string): void {
    this.#dropNegatives(dirKey, true);
    const kernel = this.#kernel;
    const key = this.#nodeKey(dirKey);
    const dir = kernel?.nodeOf(key);
    if (kernel === undefined || dir === undefined) return; // forgotten: nothing cached below
    this.#debug(`unwatched ${dir.path ?? `dir ${dirKey}`}`);
    this.#options.local.dropped(key, undefined, undefined, undefined);
    this.#inval(dir, 0, "inode+data");
    for (const node of kernel.knownNodes()) {
      if (node.parent !== dir) continue;
      this.#track(kernel.invalidateEntry(dir, node.name));
      this.#track(kernel.invalidateInode(node, -1, 0));
    }
  }

  /** Drops everything the kernel and the client cache. */
  #all(why: string): void {
    this.#seq++;
    this.#allAt = this.#seq;
    this.#lastEvent.clear();
    this.#options.local.droppedAll();
    this.#dropAllNegatives();
    const kernel = this.#kernel;
    if (kernel === undefined) return;
    const nodes = kernel.knownNodes();
    this.#options.logger.debug(`live: ${why}: dropping ${nodes.length} cached nodes`);
    const root = kernel.nodeOf("");
    if (root !== undefined) this.#track(kernel.invalidateInode(root, 0, 0));
    for (const node of nodes) {
      if (node.parent !== undefined) {
        this.#track(kernel.invalidateEntry(node.parent, node.name));
      }
      this.#track(kernel.invalidateInode(node, 0, 0));
    }
  }
}

function describe(what: number): string {
  const parts: string[] = [];
  if (what & ChangeKind.NAME) parts.push("name");
  if (what & ChangeKind.ATTR) parts.push("attr");
  if (what & ChangeKind.DATA) parts.push("data");
  if (what & ChangeKind.SELF) parts.push("self");
  return `changed(${parts.join(",")})`;
}
