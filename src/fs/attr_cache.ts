/**
 * What the client remembers about inodes between calls, to answer the kernel without a round
 * trip or to decide like the container would.
 *
 * Invariants:
 * - What is known of an inode is kept with its node (`node.data`, made on first use), so a
 *   listed entry costs no map insertion: the last attributes told to the kernel (by LOOKUP,
 *   READDIRPLUS, CREATE, GETATTR, SETATTR…; entries as the answer is written, through
 *   `FileSystem.entered`) are what `attrOf` answers; they decide set-group-ID inheritance and the
 *   page-cache policy of an open.
 * - "No xattrs": an inode the satellite said has no xattrs answers GETXATTR/LISTXATTR locally
 *   for the attribute timeout its attributes were told with (the change feed's long one where it
 *   vouches: an xattr change inside the container is an event that forgets it); any xattr change
 *   through the mount forgets it, and so does a new satellite (`clear`).
 * - Listed names: attributes of a name listed with `plus` answer its next LOOKUP once, within
 *   min(entry, attribute timeout) of the listing; a change of the name forgets it. The listing
 *   itself answers (kept per directory, bounded by its names), not an entry per name.
 * - Complete listings: the names of a directory whose listing was read whole (every batch, up to
 *   the end, nothing dropped and nothing changed through the mount meanwhile) answer a LOOKUP of
 *   any other name with ENOENT, within min(entry, attribute timeout) of when the satellite made
 *   the listing, or beyond while `vouched` says the change feed watches the directory (an event
 *   in it forgets them). A change through the mount of a name in the directory adds that name
 *   (whatever the change did: a name in the set is only "not known absent"). At most
 *   `completeDirs` directories and `completeNames` names in all are kept.
 * - Changed directories: a directory's attributes returned right after our change in it answer
 *   its next GETATTR once, within the attribute timeout, unless newer attributes of it were told
 *   since (a chmod of the directory must not be answered with its mode from before).
 * - Every map has its own bound; past it the oldest entry goes (a miss only costs a round trip).
 *   What nodes hold lasts as long as the kernel keeps the node.
 *
 * @module
 */

import type { Attr, Node } from "../fuse/mod.ts";
import type { Stat } from "../protocol/mod.ts";
import { S_IFDIR, S_IFMT } from "../linux/mod.ts";
import { BoundedMap } from "./bounded_map.ts";

/** Bounds of the caches (entries). */
export interface AttrCacheLimits {
  /** Names of listings kept to answer LOOKUPs, in all. */
  listed: number;
  /** Directories' attributes after our change in them. */
  changed: number;
  /** Directories whose complete listing is kept. */
  completeDirs: number;
  /** Names of complete listings kept, in all. */
  completeNames: number;
}

/** Default bounds: a few megabytes at most. */
export const ATTR_CACHE_LIMITS: AttrCacheLimits = {
  listed: 65536,
  changed: 4096,
  completeDirs: 256,
  completeNames: 65536,
};

/** A directory's listing as it answers LOOKUPs (a DirListing). */
export interface ListedNames {
  /** Names it holds. */
  readonly size: number;
  /** The attributes it showed `name` with (checked), if any. */
  statOf(name: string): Stat | undefined;
}

/** A name's attributes from a listing asked after change event `since` (if known). */
export interface Listed {
  readonly stat: Stat;
  readonly since: number | undefined;
}

/** Options of {@link AttrCache}. Times in milliseconds. */
export interface AttrCacheOptions {
  /** The kernel's attribute timeout. */
  attrTtlMs: number;
  /** How long a listing's attributes may answer a LOOKUP: min(entry, attribute timeout). */
  listedTtlMs: number;
  limits?: Partial<AttrCacheLimits>;
  /** The clock (ms); `Date.now` by default. */
  now?: () => number;
  /** True while the change feed watches directory `key` (its complete listing stays true). */
  vouched?: (key: string) => boolean;
}

/** State of the "no xattrs" knowledge of an inode. */
export type NoXattrsState = "yes" | "expired" | "unknown";

/** What is known of an inode, kept with its node (`node.data`). */
interface NodeFacts {
  attr: Attr | undefined;
  /** Until when (ms) "no xattrs" is trusted (0: not known), learnt in `xattrsEpoch`. */
  noXattrsUntil: number;
  xattrsEpoch: number;
  /** As `noteLong` was told (`longChanges` -1: never). */
  longSeq: number;
  longChanges: number;
}

/** A listing kept to answer LOOKUPs. */
interface ListedDir {
  readonly names: ListedNames;
  until: number;
  since: number | undefined;
  /** Names it answered once, or whose change through the mount it no longer shows. */
  used: Set<string> | undefined;
  /** Its size when last noted (its share of the bound). */
  counted: number;
}

/** The attribute and xattr cache of one mount. */
export class AttrCache {
  readonly #attrTtlMs: number;
  readonly #listedTtlMs: number;
  readonly #now: () => number;
  readonly #vouched: (key: string) => boolean;
  /** Bumped by `clear`: "no xattrs" learnt before is not trusted. */
  #xattrsEpoch = 0;
  /** Directory key → its listing, until when it serves, and the names it no longer answers. */
  readonly #listed = new Map<string, ListedDir>();
  readonly #listedLimit: number;
  #listedNames = 0;
  readonly #changed: BoundedMap<string, { attr: Attr; until: number; changes: number }>;
  /** Directory key → every name of its complete listing and until when it answers. */
  readonly #complete: BoundedMap<
    string,
    { names: Set<string>; until: number; vouchable: boolean }
  >;
  readonly #completeNames: number;
  #completeCount = 0;

  constructor(options: AttrCacheOptions) {
    this.#attrTtlMs = options.attrTtlMs;
    this.#listedTtlMs = options.listedTtlMs;
    this.#now = options.now ?? Date.now;
    this.#vouched = options.vouched ?? (() => false);
    const limits = { ...ATTR_CACHE_LIMITS, ...options.limits };
    this.#listedLimit = limits.listed;
    this.#changed = new BoundedMap(limits.changed);
    this.#complete = new BoundedMap(limits.completeDirs);
    this.#completeNames = limits.completeNames;
  }

  /** How long a listing's attributes serve (ms); 0: listings are not remembered. */
  get listedTtlMs(): number {
    return this.#listedTtlMs;
  }

  // --- node attributes ---------------------------------------------------------------------

  /** What is known of `node`'s inode (made on first use). */
  #facts(node: Node): NodeFacts {
    let facts = node.data as NodeFacts | undefined;
    if (facts === undefined) {
      facts = { attr: undefined, noXattrsUntil: 0, xattrsEpoch: 0, longSeq: 0, longChanges: -1 };
      node.data = facts;
    }
    return facts;
  }

  /** Attributes told to the kernel for `node`. */
  setAttr(node: Node, attr: Attr): void {
    if (this.#changed.size > 0) this.#changed.delete(node.key);
    this.#facts(node).attr = attr;
  }

  /** The attributes last told to the kernel for `node`, if known. */
  attrOf(node: Node): Attr | undefined {
    return (node.data as NodeFacts | undefined)?.attr;
  }

  /** `node` was written up to `end` through the mount: its size is at least that now. */
  extend(node: Node, end: number): void {
    const attr = this.attrOf(node);
    if (attr !== undefined && attr.size < end) this.#facts(node).attr = { ...attr, size: end };
  }

  /**
   * `node`'s attributes were told with the change feed's long timeout, read after event `seq`,
   * when `changes` changes through the mount had been counted.
   */
  noteLong(node: Node, seq: number, changes: number): void {
    const facts = this.#facts(node);
    facts.longSeq = seq;
    facts.longChanges = changes;
  }

  /** What `noteLong` last noted of `node`, if anything. */
  longOf(node: Node): { seq: number; changes: number } | undefined {
    const facts = node.data as NodeFacts | undefined;
    return facts === undefined || facts.longChanges < 0
      ? undefined
      : { seq: facts.longSeq, changes: facts.longChanges };
  }

  /** Forgets what was learnt from the satellite (a new one answers now); nodes keep theirs. */
  clear(): void {
    this.#xattrsEpoch++;
    this.forgetAllListed();
    this.#changed.clear();
    this.#complete.clear();
    this.#completeCount = 0;
  }

  // --- "no xattrs" -------------------------------------------------------------------------

  /**
   * Records what the satellite said of `node`'s xattrs along with its attributes. Attributes
   * read without the probe (an fstat, a setattr's answer) leave what is known as it is: no
   * change that comes with them adds an xattr (a write, chown or truncate only removes
   * security.capability), and the xattr calls and the change feed forget it themselves.
   */
  noteXattrs(node: Node, hasXattrs: boolean | undefined, ttlMs = this.#attrTtlMs): void {
    if (hasXattrs === undefined) return;
    const facts = this.#facts(node);
    facts.noXattrsUntil = hasXattrs || ttlMs <= 0 ? 0 : this.#now() + ttlMs;
    facts.xattrsEpoch = this.#xattrsEpoch;
  }

  /** "yes" inside the timeout; "expired" when it was so before (worth one listxattr to renew). */
  noXattrs(node: Node): NoXattrsState {
    const facts = node.data as NodeFacts | undefined;
    if (
      facts === undefined || facts.noXattrsUntil === 0 || facts.xattrsEpoch !== this.#xattrsEpoch
    ) return "unknown";
    return facts.noXattrsUntil > this.#now() ? "yes" : "expired";
  }

  /** The xattrs of `node` change (or were seen non-empty). */
  forgetXattrs(node: Node): void {
    const facts = node.data as NodeFacts | undefined;
    if (facts !== undefined) facts.noXattrsUntil = 0;
  }

  // --- listed names ------------------------------------------------------------------------

  /**
   * `names`, a listing of `dirKey` made at `fetchedAt` (ms) and asked after change event `since`,
   * answers LOOKUPs of its names with their attributes, once each. Noted again as it grows (a
   * further batch), it serves until its oldest batch's time, with that batch's `since`.
   */
  noteListed(dirKey: string, names: ListedNames, fetchedAt: number, since?: number): void {
    if (this.#listedTtlMs <= 0 || names.size > this.#listedLimit) {
      return this.forgetListedDir(dirKey);
    }
    const until = fetchedAt + this.#listedTtlMs;
    const held = this.#listed.get(dirKey);
    if (held !== undefined && held.names === names) {
      this.#listedNames += names.size - held.counted;
      held.counted = names.size;
      held.until = Math.min(held.until, until);
      held.since = held.since === undefined || since === undefined
        ? undefined
        : Math.min(held.since, since);
    } else {
      this.forgetListedDir(dirKey);
      this.#listed.set(dirKey, { names, until, since, used: undefined, counted: names.size });
      this.#listedNames += names.size;
    }
    for (const key of this.#listed.keys()) {
      if (this.#listedNames <= this.#listedLimit) break;
      if (key !== dirKey) this.forgetListedDir(key); // oldest first
    }
  }

  /** The listed attributes of `name` in `dirKey` (and their `since`) when still fresh; once. */
  takeListed(dirKey: string, name: string): Listed | undefined {
    const dir = this.#listed.get(dirKey);
    if (dir === undefined || dir.used?.has(name)) return undefined;
    const stat = dir.names.statOf(name);
    if (stat === undefined) return undefined;
    (dir.used ??= new Set()).add(name);
    return dir.until > this.#now() ? { stat, since: dir.since } : undefined;
  }

  /** `name` in `dirKey` changes through the mount. */
  forgetListed(dirKey: string, name: string): void {
    const dir = this.#listed.get(dirKey);
    if (dir !== undefined) (dir.used ??= new Set()).add(name);
  }

  /** No listing of `dirKey` answers LOOKUPs. */
  forgetListedDir(dirKey: string): void {
    const dir = this.#listed.get(dirKey);
    if (dir === undefined) return;
    this.#listed.delete(dirKey);
    this.#listedNames -= dir.counted;
  }

  /**
   * Something changes through the mount: no listing made before answers a LOOKUP (a change may
   * reach other names than its own: a link or an unlink changes the link count every name of the
   * inode shows, a rename the moved inode's ctime).
   */
  forgetAllListed(): void {
    this.#listed.clear();
    this.#listedNames = 0;
  }

  // --- complete listings -----------------------------------------------------------------

  /** Directories whose complete listing is kept. */
  get completeDirs(): number {
    return this.#complete.size;
  }

  /**
   * A listing made at `madeAt` (ms) showed all of `dirKey`'s names: `names`. Not `vouchable`:
   * it lasts its time only, whatever the change feed says (it was not read under a watch).
   */
  noteComplete(
    dirKey: string,
    names: Iterable<string>,
    madeAt: number,
    vouchable = true,
  ): void {
    this.forgetComplete(dirKey);
    if (this.#listedTtlMs <= 0) return;
    const set = new Set(names);
    if (set.size > this.#completeNames) return;
    while (this.#completeCount + set.size > this.#completeNames) {
      this.forgetComplete(this.#complete.keys().next().value!);
    }
    if (this.#complete.size >= this.#complete.limit) {
      this.forgetComplete(this.#complete.keys().next().value!);
    }
    this.#complete.set(dirKey, { names: set, until: madeAt + this.#listedTtlMs, vouchable });
    this.#completeCount += set.size;
  }

  /**
   * True when `name` is known absent from `dirKey`: a fresh complete listing of it does not show
   * it. False when not known (no listing, an expired one, or the name is in it).
   */
  knownAbsent(dirKey: string, name: string): boolean {
    const complete = this.#complete.get(dirKey);
    if (complete === undefined) return false;
    if (complete.until <= this.#now() && !(complete.vouchable && this.#vouched(dirKey))) {
      this.forgetComplete(dirKey);
      return false;
    }
    return !complete.names.has(name);
  }

  /**
   * True when `name` is known absent (see `knownAbsent`) from a listing read under the change
   * feed's watch, which still watches `dirKey`: what the feed vouches for.
   */
  absentVouched(dirKey: string, name: string): boolean {
    const complete = this.#complete.get(dirKey);
    return complete !== undefined && complete.vouchable && this.#vouched(dirKey) &&
      !complete.names.has(name);
  }

  /**
   * Up to `max` names of `dirKey`'s complete listing, those after `name` first (readdir order,
   * then from the start again), leaving out `name` and those `skip` says; held or not for
   * lookups. Undefined when no listing is held or `name` is not in it.
   */
  namesAround(
    dirKey: string,
    name: string,
    max: number,
    skip: (name: string) => boolean,
  ): string[] | undefined {
    const complete = this.#complete.get(dirKey);
    if (complete === undefined || !complete.names.has(name)) return undefined;
    const after: string[] = [];
    const before: string[] = [];
    let past = false;
    for (const n of complete.names) {
      if (n === name) past = true;
      else if (past) {
        if (!skip(n) && after.push(n) >= max) break;
      } else if (before.length < max && !skip(n)) before.push(n);
    }
    return after.concat(before).slice(0, max);
  }

  /**
   * `name` in `dirKey` is changed through the mount (created, removed, renamed to or from,
   * whatever the answer): it is no longer known absent; every other name stays as it was.
   */
  notePresent(dirKey: string, name: string): void {
    const complete = this.#complete.get(dirKey);
    if (complete === undefined || complete.names.has(name)) return;
    if (this.#completeCount >= this.#completeNames) {
      this.forgetComplete(dirKey);
      return;
    }
    complete.names.add(name);
    this.#completeCount++;
  }

  /** Names in `dirKey` change through the mount (or its listing is no longer trusted). */
  forgetComplete(dirKey: string): void {
    const complete = this.#complete.get(dirKey);
    if (complete === undefined) return;
    this.#complete.delete(dirKey);
    this.#completeCount -= complete.names.size;
  }

  // --- attributes right after our own change ----------------------------------------------

  /**
   * The inode `key`'s attributes right after our change to it (a directory's after a name made
   * or removed in it, a file's after the flush of its writes; undefined: not known), when the
   * mount's changes count (MountChanges) was `changes`.
   */
  noteChanged(key: string, attr: Attr | undefined, changes: number): void {
    if (attr === undefined || this.#attrTtlMs <= 0) {
      this.#changed.delete(key);
      return;
    }
    this.#changed.set(key, { attr, until: this.#now() + this.#attrTtlMs, changes });
  }

  /** Forgets what {@link noteChanged} noted for `key` (it changed again since). */
  forgetChanged(key: string): void {
    this.#changed.delete(key);
  }

  /**
   * The attributes noted by {@link noteChanged} when still fresh; used once. A file's serve only
   * if nothing changed through the mount since (the count is still `changes`: a truncating open,
   * a link, another handle's write could have made them old). A directory's attributes change
   * only with names in it, and every such change notes new ones or drops them: a write to a
   * file in it (which moves the count) leaves them true.
   */
  takeChanged(key: string, changes: number): Attr | undefined {
    const changed = this.#changed.get(key);
    if (changed === undefined) return undefined;
    this.#changed.delete(key);
    if (changed.until <= this.#now()) return undefined;
    const dir = (changed.attr.mode & S_IFMT) === S_IFDIR;
    return dir || changed.changes === changes ? changed.attr : undefined;
  }
}
