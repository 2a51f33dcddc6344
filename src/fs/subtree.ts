/**
 * Walking ahead: once a directory is listed, the satellite walks its subdirectories' subtrees
 * (`walk`, depth first, whole directories with attributes and symlink targets, many directories
 * per answer, several answers in flight), so a walk of the mount (find, ls -R, grep -r, du)
 * costs a round trip per answer instead of one per directory and one per symlink: what bounds
 * its time on a remote engine is the round trip, not the number of entries.
 *
 * Invariants:
 * - A listing serves OPENDIR, a directory's own attributes LOOKUP, a symlink's target READLINK,
 *   within `ttlMs` of when its walk was asked (the satellite made it later), as the kernel's
 *   own caches would; beyond, while `vouched` says the change feed watches its directory (any
 *   event drops everything held here, so a listing still held is as the directory is now).
 * - A walk answered after a change through the mount began (`MountChanges`) is not kept, and
 *   `drop()` (any change through the mount) forgets everything fetched or queued. Where
 *   directories are (`#known`) is kept only to direct walks; a walked directory whose own
 *   identity is not the one asked for (renamed or replaced meanwhile) is not kept.
 * - Bounded work and memory: at most `inFlight` walks at once (more, up to `MAX_IN_FLIGHT`,
 *   when the round trip is long), and no new walk while listings nobody took yet hold
 *   `bufferEntries` entries (a directory a walker waits for is walked at once), so walking stops
 *   soon after nobody uses it. Directories queued are forgotten after `ttlMs`.
 * - Mount points (another device than the listed directory's) are never walked into.
 *
 * @module
 */

import { DT_DIR, DT_LNK } from "../linux/mod.ts";
import type {
  DirEntry as WireDirEntry,
  PathArg,
  RpcCalls,
  RpcResult,
  Stat,
  WalkEntry,
} from "../protocol/mod.ts";
import { nameProblem, statKey, statProblem } from "./checks.ts";
import type { MountChanges } from "./mount_changes.ts";

/** A listing fetched ahead: a whole directory and when its walk was asked. */
export interface WalkedListing {
  readonly entries: readonly WalkEntry[];
  /** Time (ms) the walk was asked: the listing is at least this recent. */
  readonly at: number;
  /** Listed without symlink targets (an opendir's): serves within its time only. */
  readonly noTargets?: boolean;
}

/** Options of {@link SubtreeAhead}. */
export interface SubtreeAheadOptions {
  /** How long (ms) a listing or target may serve after its walk was asked; 0 disables. */
  ttlMs: number;
  /** Entries asked per walk answer (default 1024). */
  maxEntries?: number;
  /** Bytes asked per walk answer (default 384 KiB). */
  maxBytes?: number;
  /** Walks in flight at least (default 2); more when the round trip is long. */
  inFlight?: number;
  /**
   * How long (ms) the satellite may work on one answer (`walk`'s `maxMs`), for a satellite near:
   * the requests read behind a walk wait for it. Default: no limit (far away, an answer cut
   * short costs a round trip).
   */
  sliceMs?: number;
  /** Entries of listings not yet taken above which no walk is asked (default 8192). */
  bufferEntries?: number;
  /** Directories queued at most (default 8192). */
  queueLimit?: number;
  /** The clock (ms); `Date.now` by default. */
  now?: () => number;
  /**
   * True while the change feed watches directory `key`: what a walk brought of it stays true
   * until an event, which drops it (`drop()`). None by default.
   */
  vouched?: (key: string) => boolean;
}

/** Walks in flight at most, however long the round trip. */
export const MAX_IN_FLIGHT = 8;
/** Paths asked in one walk at most. */
const PATHS_PER_WALK = 64;
/** Directories whose place in the tree is remembered at most. */
const KNOWN_LIMIT = 16384;
/** Listings kept after they were taken, at most, and their entries at most. */
const TAKEN_LIMIT = 4096;
const TAKEN_ENTRIES_LIMIT = 65536;
/** Symlink targets kept at most. */
const TARGETS_LIMIT = 65536;

interface Queued {
  readonly key: string;
  readonly path: string;
  readonly at: number;
}

type WalkCalls = Pick<RpcCalls, "walk">;

function join(path: string, name: string): string {
  return path === "" ? name : `${path}/${name}`;
}

/** The key of a subdirectory entry worth walking into from a directory on `dev`, if any. */
function subdirKey(e: WireDirEntry, dev: string): string | undefined {
  if (e.type !== DT_DIR || e.stat === undefined || typeof e.name !== "string") return undefined;
  if (e.name === "." || e.name === ".." || nameProblem(e.name) !== undefined) return undefined;
  if (statProblem(e.stat) !== undefined) return undefined;
  const key = statKey(e.stat);
  return key.startsWith(dev) ? key : undefined;
}

/** The device part ("major:minor:") of a directory key. */
function devOf(key: string): string {
  return key.slice(0, key.lastIndexOf(":") + 1);
}

/** Walks subtrees ahead of the kernel's requests. */
export class SubtreeAhead {
  readonly #rpc: () => WalkCalls;
  readonly #changes: MountChanges;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #sliceMs: number | undefined;
  readonly #maxBytes: number;
  readonly #minInFlight: number;
  readonly #bufferEntries: number;
  readonly #queueLimit: number;
  readonly #now: () => number;
  readonly #vouched: (key: string) => boolean;
  /** Directory key → its listing, not yet taken (in order of arrival). */
  readonly #done = new Map<string, WalkedListing>();
  #doneEntries = 0;
  /** Listings taken, by key (in order of taking): they serve an opendir again in their time. */
  readonly #taken = new Map<string, WalkedListing>();
  #takenEntries = 0;
  /** Symlink key → its target and its directory's key (in order of arrival). */
  readonly #targets = new Map<string, { target: PathArg; at: number; dir: string }>();
  /** Path → the attributes of a walked directory as it was listed (in order of arrival). */
  readonly #selves = new Map<string, { stat: Stat; at: number }>();
  /** Directories to walk, the next on top; an item counts only while `#queued` holds it. */
  #stack: Queued[] = [];
  readonly #queued = new Map<string, Queued>();
  /**
   * Directory key → its path, its parent's key and its subdirectories, from every listing seen
   * (only to direct walks: what the kernel is told always comes from a fresh listing).
   */
  readonly #known = new Map<string, { path: string; parent?: string; subdirs?: Queued[] }>();
  /** Directory key → when a walk listed it (in order of arrival): not walked again meanwhile. */
  readonly #seen = new Map<string, number>();
  /** Key of each path of a walk in flight → that walk's handling. */
  readonly #asked = new Map<string, Promise<void>>();
  #running = 0;
  /** Bumped by `drop()`: walks asked before it are not kept. */
  #epoch = 0;
  /** Shortest walk seen (ms): an upper bound of the round trip. */
  #rttMs: number | undefined;
  /** Walks asked and answers used, for tests and logs. */
  walks = 0;

  /** `rpc`: the calls, or a function giving those of the current connection. */
  constructor(
    rpc: WalkCalls | (() => WalkCalls),
    changes: MountChanges,
    options: SubtreeAheadOptions,
  ) {
    this.#rpc = typeof rpc === "function" ? rpc : () => rpc;
    this.#changes = changes;
    this.#ttlMs = options.ttlMs;
    this.#maxEntries = options.maxEntries ?? 1024;
    this.#sliceMs = options.sliceMs;
    this.#maxBytes = options.maxBytes ?? 384 * 1024;
    this.#minInFlight = options.inFlight ?? 2;
    this.#bufferEntries = options.bufferEntries ?? 8192;
    this.#queueLimit = options.queueLimit ?? 8192;
    this.#now = options.now ?? Date.now;
    this.#vouched = options.vouched ?? (() => false);
  }

  /** Whether what a walk of directory `key` brought at `at` still holds. */
  #holds(key: string, at: number, now: number): boolean {
    return now - at < this.#ttlMs || this.#vouched(key);
  }

  /** Whether taken listing `l` of `key` serves past its time (one with targets, vouched for). */
  #vouchedTaken(key: string, l: WalkedListing): boolean {
    return l.noTargets !== true && this.#vouched(key);
  }

  #keepTaken(key: string, listing: WalkedListing): void {
    const old = this.#taken.get(key);
    if (old !== undefined) {
      this.#taken.delete(key);
      this.#takenEntries -= old.entries.length;
    }
    this.#taken.set(key, listing);
    this.#takenEntries += listing.entries.length;
  }

  /** Listings fetched and not yet taken. */
  get size(): number {
    return this.#done.size;
  }

  /** Walks allowed in flight: more when the round trip is long (one per 20 ms of it). */
  get inFlight(): number {
    const rtt = this.#rttMs ?? 0;
    return Math.min(MAX_IN_FLIGHT, this.#minInFlight + Math.floor(rtt / 20));
  }

  /**
   * The directory `dirKey` at protocol path `path` was listed whole as `entries`: its
   * subdirectories not fetched yet are walked next, unless `ahead` is false (a listing made to
   * answer LOOKUPs, not to be read: where they are is only remembered, and the first one
   * opened is walked then, with its siblings). With `listedAt` (when that listing was asked;
   * the caller vouches that nothing changed since) the listing also serves the directory's next
   * opendir within its time, as a walked one would (`rm -r` and `find` open a directory twice).
   */
  queue(
    dirKey: string,
    path: string,
    entries: readonly WireDirEntry[],
    listedAt?: number,
    ahead = true,
  ): void {
    if (this.#ttlMs <= 0) return;
    const now = this.#now();
    if (listedAt !== undefined && now - listedAt < this.#ttlMs && !this.#done.has(dirKey)) {
      this.#keepTaken(dirKey, { entries, at: listedAt, noTargets: true });
      this.#seen.delete(dirKey);
      this.#seen.set(dirKey, listedAt);
    }
    const subdirs = this.#learn(dirKey, path, entries, now);
    if (!ahead) return;
    this.#push(subdirs.filter((q) => !this.#done.has(q.key) && !this.#asked.has(q.key)));
    this.#pump();
  }

  /**
   * The listing of `key` fetched ahead and still fresh, waiting for it if under way. A directory
   * queued, or one seen before whose listing is gone (the walk ran too far ahead, or too long
   * ago), is walked at once — one round trip, as an opendir, and its subtree comes along — and
   * so are its siblings not fresh (the walker is probably among them).
   */
  async take(key: string): Promise<WalkedListing | undefined> {
    this.#evict();
    const now = this.#now();
    // Opened again within its time (find returns to a parent), or while the feed vouches for
    // it (a warm walk): the same listing serves, as current as the vouching says.
    const again = this.#taken.get(key);
    if (!this.#done.has(key) && again !== undefined) {
      if (now - again.at < this.#ttlMs) return again;
      if (this.#vouchedTaken(key, again)) {
        return { entries: again.entries, at: now };
      }
    }
    if (!this.#done.has(key) && this.#ttlMs > 0 && this.#asked.get(key) === undefined) {
      const queued = this.#queued.get(key);
      const known = this.#known.get(key);
      if (queued !== undefined) this.#send([queued]);
      // Seen before, its listing gone (the walk ran too far ahead, or too long ago): walked
      // again at once, alone when what is below it is fresh, else with its subtree.
      else if (known !== undefined) {
        const below = known.subdirs ?? [];
        const stale = below.some((q) => !this.#fresh(q.key, now));
        this.#send([{ key, path: known.path, at: now }], stale ? this.#maxEntries : 1);
      }
      const siblings = known?.parent === undefined
        ? undefined
        : this.#known.get(known.parent)?.subdirs;
      if (siblings !== undefined && (queued !== undefined || known !== undefined)) {
        this.#push(
          siblings.filter((q) => q.key !== key && !this.#done.has(q.key) && !this.#asked.has(q.key))
            .map((q) => ({ ...q, at: now })),
        );
      }
    }
    const asked = this.#asked.get(key);
    if (asked !== undefined) await asked;
    const done = this.#done.get(key);
    if (done === undefined) return undefined;
    this.#done.delete(key);
    this.#doneEntries -= done.entries.length;
    this.#pump();
    if (this.#now() - done.at >= this.#ttlMs) return undefined;
    this.#keepTaken(key, done);
    return done;
  }

  /**
   * Whether a walk brought `key`'s listing and nobody took it yet, or is bringing it: `take(key)`
   * answers without a walk of its own.
   */
  holds(key: string): boolean {
    return this.#done.has(key) || this.#asked.has(key);
  }

  /** The target of the symlink `key` from a fresh walk, if any. */
  target(key: string): PathArg | undefined {
    const t = this.#targets.get(key);
    if (t === undefined) return undefined;
    if (this.#holds(t.dir, t.at, this.#now())) return t.target;
    this.#targets.delete(key);
    return undefined;
  }

  /**
   * The attributes of the directory at protocol path `path` from a fresh walk (they answer the
   * kernel's LOOKUP when it revalidates a directory it enters later than its timeout).
   */
  dirStat(path: string): Stat | undefined {
    const d = this.#selves.get(path);
    if (d === undefined) return undefined;
    if (this.#holds(statKey(d.stat), d.at, this.#now())) return d.stat;
    this.#selves.delete(path);
    return undefined;
  }

  /**
   * Forgets every listing, target and queued directory (something changed through the mount).
   * At every change (each file a shell loop creates): empty tables are left as they are, as
   * clearing one allocates a new one.
   */
  drop(): void {
    this.#epoch++;
    this.#takenEntries = 0;
    this.#doneEntries = 0;
    for (
      const table of [
        this.#taken,
        this.#selves,
        this.#seen,
        this.#done,
        this.#targets,
        this.#queued,
        this.#asked,
      ]
    ) {
      if (table.size > 0) table.clear();
    }
    if (this.#stack.length > 0) this.#stack = [];
  }

  /** Remembers where `dirKey` is and its subdirectories (worth walking); returns those. */
  #learn(dirKey: string, path: string, entries: readonly WireDirEntry[], now: number): Queued[] {
    const dev = devOf(dirKey);
    const subdirs: Queued[] = [];
    for (const e of entries) {
      const key = subdirKey(e, dev);
      if (key === undefined) continue;
      const sub = join(path, e.name as string);
      subdirs.push({ key, path: sub, at: now });
      const known = this.#known.get(key);
      if (known === undefined || known.path !== sub || known.parent !== dirKey) {
        this.#known.delete(key);
        this.#known.set(key, { path: sub, parent: dirKey, subdirs: known?.subdirs });
      }
    }
    const self = this.#known.get(dirKey);
    this.#known.delete(dirKey);
    this.#known.set(dirKey, {
      path,
      parent: self?.path === path ? self.parent : undefined,
      subdirs,
    });
    while (this.#known.size > KNOWN_LIMIT) this.#known.delete(this.#known.keys().next().value!);
    return subdirs;
  }

  /**
   * True when a walk listed `key` within the time (taken or not: never walked again then), or
   * its taken listing is still vouched for.
   */
  #fresh(key: string, now: number): boolean {
    const at = this.#seen.get(key);
    if (at !== undefined && now - at < this.#ttlMs) return true;
    const taken = this.#taken.get(key);
    return taken !== undefined && this.#vouchedTaken(key, taken);
  }

  /** Queues `items` (the first ends on top), except those listed lately. */
  #push(items: readonly Queued[]): void {
    const now = this.#now();
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i];
      if (this.#fresh(item.key, now)) continue;
      if (this.#queued.size >= this.#queueLimit && !this.#queued.has(item.key)) continue;
      this.#queued.set(item.key, item);
      this.#stack.push(item);
    }
    if (this.#stack.length > 4 * this.#queueLimit) {
      this.#stack = this.#stack.filter((q) => this.#queued.get(q.key) === q);
    }
  }

  /**
   * Forgets listings and queued directories past their time. What the feed vouches for is
   * kept (up to the limits) where it comes first: the oldest are checked, in order.
   */
  #evict(): void {
    const now = this.#now();
    for (const [key, l] of this.#done) {
      if (now - l.at < this.#ttlMs) break;
      this.#done.delete(key);
      this.#doneEntries -= l.entries.length;
    }
    for (const [key, t] of this.#targets) {
      if (this.#holds(t.dir, t.at, now) && this.#targets.size <= TARGETS_LIMIT) break;
      this.#targets.delete(key);
    }
    for (const [key, l] of this.#taken) {
      const within = this.#taken.size <= TAKEN_LIMIT && this.#takenEntries <= TAKEN_ENTRIES_LIMIT;
      if (within && (now - l.at < this.#ttlMs || this.#vouchedTaken(key, l))) break;
      this.#taken.delete(key);
      this.#takenEntries -= l.entries.length;
    }
    for (const [key, at] of this.#seen) {
      if (now - at < this.#ttlMs && this.#seen.size <= KNOWN_LIMIT) break;
      this.#seen.delete(key);
    }
    for (const [path, d] of this.#selves) {
      if (this.#holds(statKey(d.stat), d.at, now) && this.#selves.size <= TARGETS_LIMIT) break;
      this.#selves.delete(path);
    }
  }

  /** The next queued directory still wanted, if any. */
  #pop(now: number): Queued | undefined {
    for (;;) {
      const item = this.#stack.pop();
      if (item === undefined) return undefined;
      if (this.#queued.get(item.key) !== item) continue; // queued again since, or dropped
      this.#queued.delete(item.key);
      if (now - item.at >= this.#ttlMs) continue; // the walker has moved on
      if (this.#done.has(item.key) || this.#asked.has(item.key)) continue;
      if (this.#fresh(item.key, now)) continue;
      return item;
    }
  }

  #pump(): void {
    this.#evict();
    const now = this.#now();
    while (this.#running < this.inFlight && this.#queued.size > 0) {
      if (this.#doneEntries + this.#running * this.#maxEntries >= this.#bufferEntries) return;
      const free = this.inFlight - this.#running;
      const per = Math.min(PATHS_PER_WALK, Math.max(1, Math.ceil(this.#queued.size / free)));
      const items: Queued[] = [];
      while (items.length < per) {
        const item = this.#pop(now);
        if (item === undefined) break;
        items.push(item);
      }
      if (items.length === 0) return;
      this.#send(items);
    }
  }

  #send(items: readonly Queued[], maxEntries = this.#maxEntries): void {
    for (const item of items) {
      if (this.#queued.get(item.key) === item) this.#queued.delete(item.key);
    }
    const changes = this.#changes.mark(); // a change under way may or may not be seen
    const epoch = this.#epoch;
    const sentAt = this.#now();
    this.#running++;
    this.walks++;
    const handled = this.#rpc().walk({
      paths: items.map((i) => i.path),
      maxEntries,
      maxBytes: this.#maxBytes,
      maxMs: this.#sliceMs,
    }).then((r) => {
      this.#running--;
      const took = this.#now() - sentAt;
      this.#rttMs = this.#rttMs === undefined ? took : Math.min(this.#rttMs, took);
      for (const item of items) {
        if (this.#asked.get(item.key) === handled) this.#asked.delete(item.key);
      }
      if (epoch === this.#epoch && changes === this.#changes.count) {
        this.#keep(items, r, sentAt);
      }
      this.#pump();
    });
    for (const item of items) this.#asked.set(item.key, handled);
  }

  /** Keeps the listings and targets of a walk's answer and queues what it did not reach. */
  #keep(
    items: readonly Queued[],
    r: RpcResult<{ dirs: { path: PathArg; self?: Stat; entries: WalkEntry[] }[]; walked: number }>,
    at: number,
  ): void {
    if (!r.ok) return;
    const keyOf = new Map<string, string>(items.map((i) => [i.path, i.key]));
    const listed: { key: string; path: string; entries: readonly WalkEntry[] }[] = [];
    for (const dir of r.value.dirs) {
      if (typeof dir.path !== "string") continue;
      const key = keyOf.get(dir.path);
      if (key === undefined) continue; // not asked, nor below what was asked: ignored
      // Another directory at that path now (renamed, replaced): not the one asked for.
      if (dir.self === undefined || statProblem(dir.self) !== undefined) continue;
      if (statKey(dir.self) !== key) continue;
      this.#selves.set(dir.path, { stat: dir.self, at });
      const dev = devOf(key);
      for (const e of dir.entries) {
        if (e.type === DT_LNK && e.target !== undefined && e.stat !== undefined) {
          if (statProblem(e.stat) === undefined) {
            this.#targets.set(statKey(e.stat), { target: e.target, at, dir: key });
          }
          continue;
        }
        const sub = subdirKey(e, dev);
        if (sub !== undefined) keyOf.set(join(dir.path, e.name as string), sub);
      }
      this.#learn(key, dir.path, dir.entries, at);
      this.#seen.delete(key);
      this.#seen.set(key, at);
      if (!this.#done.has(key)) {
        this.#done.set(key, { entries: dir.entries, at });
        this.#doneEntries += dir.entries.length;
      }
      listed.push({ key, path: dir.path, entries: dir.entries });
    }
    // What the answer did not reach: subdirectories of the listed directories that were not
    // listed, in walk order (depth first: the first ends on top), then asked paths past `walked`.
    const byKey = new Map(listed.map((l) => [l.key, l]));
    const next: Queued[] = [];
    const now = this.#now();
    const walked = Math.min(r.value.walked, items.length);
    const visit = (l: { key: string; path: string; entries: readonly WalkEntry[] }): void => {
      const dev = devOf(l.key);
      for (const e of l.entries) {
        const sub = subdirKey(e, dev);
        if (sub === undefined) continue;
        const below = byKey.get(sub);
        if (below !== undefined) {
          byKey.delete(sub); // each directory once, whatever the satellite answered
          visit(below);
          continue;
        }
        if (this.#done.has(sub) || this.#asked.has(sub) || this.#queued.has(sub)) continue;
        next.push({ key: sub, path: join(l.path, e.name as string), at: now });
      }
    };
    for (const item of items) {
      const top = byKey.get(item.key);
      if (top === undefined) continue;
      byKey.delete(item.key);
      visit(top);
    }
    const reached = new Set(listed.map((l) => l.key));
    for (const item of items.slice(walked)) {
      if (!reached.has(item.key)) next.push({ ...item, at: now });
    }
    this.#push(next);
  }
}
