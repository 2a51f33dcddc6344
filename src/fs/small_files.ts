/**
 * Small files read ahead of their opens. When a process opens the files of one directory one
 * after another (`grep -r`, `tar`, `cp -a`, a compiler), each open is a round trip to the
 * satellite; after the second such open in a row, the client asks for the whole contents of the
 * directory's next small files in one `readFiles`, and their opens and reads are answered from
 * here. While the opens go on, the next batch is asked for before this one runs out, and while
 * read ahead serves, the first open in another directory fetches its files (with its own).
 *
 * Invariants:
 * - An entry serves one open, of the same inode (its key), whose attributes as the kernel has
 *   them still show the size and mtime the entry was read with; anything else is a miss.
 * - An entry serves within `ttlMs` of when it was asked for, or later while `watched(dirKey)`
 *   says the change feed watches its directory; the owner clears everything at any change
 *   through the mount, an overflow and a reconnect (`clear`), and a directory's entries (and an
 *   inode's) at an event in it (`dropDir`).
 * - At most `maxBytes` of contents are held; the oldest go first. A fetch asks for no name held
 *   nor opened in this pass over the directory (opens at most IN_A_ROW_MS apart); after a fetch
 *   that brought nothing, none is asked there until the next `clear`.
 *
 * @module
 */

import type { Attr } from "../fuse/mod.ts";
import type { WholeFile } from "../protocol/mod.ts";

/** Options of {@link SmallFiles}. */
export interface SmallFilesOptions {
  /** How long (ms) contents serve an open when nothing says they are current. */
  ttlMs: number;
  /** True while the change feed watches directory `dirKey` (any event then clears all). */
  watched: (dirKey: string) => boolean;
  now?: () => number;
  /** Bytes of contents held at most (default 8 MiB). */
  maxBytes?: number;
}

interface Held {
  readonly dirKey: string;
  readonly key: string;
  readonly size: number;
  readonly mtimeSec: number;
  readonly mtimeNsec: number;
  readonly data: Uint8Array;
  readonly askedAt: number;
  /** Put into the kernel's page cache too (see `stored`). */
  stored: boolean;
}

/** What is known of one directory's opens. */
interface DirState {
  /** Names opened since the directory was last idle (answered here or not). */
  readonly opened: Set<string>;
  /** Opens in a row that found nothing here. */
  misses: number;
  /** When (ms) the last open was. */
  at: number;
  /** Entries held for it. */
  held: number;
  /** The fetch under way and the names it asked for. */
  fetching: { names: Set<string>; done: Promise<void> } | undefined;
  /** A fetch here brought nothing (its files are large, or not files): no more are asked. */
  fruitless: boolean;
}

/** Opens in one directory within this long (ms) count as "one after another". */
const IN_A_ROW_MS = 1000;
/** Opens in a row that make the next files worth fetching. */
const OPENS_TO_FETCH = 2;
/** Entries left in a directory at which the next batch is asked for. */
const REFILL_AT = 4;
/** Directories followed at once. */
const MAX_DIRS = 64;
/** Names remembered as opened per directory. */
const MAX_OPENED = 65536;

/** Whole contents of small files, by directory and name; see the module invariants. */
export class SmallFiles {
  readonly #ttlMs: number;
  readonly #watched: (dirKey: string) => boolean;
  readonly #now: () => number;
  readonly #maxBytes: number;
  /** "dirKey/name" → contents; insertion order is age. */
  readonly #held = new Map<string, Held>();
  #bytes = 0;
  readonly #dirs = new Map<string, DirState>();
  /** When (ms) an open was last answered from here. */
  #servedAt = -Infinity;

  constructor(options: SmallFilesOptions) {
    this.#ttlMs = options.ttlMs;
    this.#watched = options.watched;
    this.#now = options.now ?? Date.now;
    this.#maxBytes = options.maxBytes ?? 8 << 20;
  }

  /** Bytes of contents held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The fetch under way in `dirKey` that asked for `name`, if any. */
  pending(dirKey: string, name: string): Promise<void> | undefined {
    const fetching = this.#dirs.get(dirKey)?.fetching;
    return fetching?.names.has(name) ? fetching.done : undefined;
  }

  /**
   * An open of `name` in `dirKey`, an inode `key` whose attributes are `attr`: its contents when
   * held and current (used once), and why to fetch the directory's next files now, if so (the
   * second open in a row that found nothing, or this batch running low).
   */
  open(
    dirKey: string,
    name: string,
    key: string,
    attr: Attr,
  ): { data: Uint8Array | undefined; fetch: "missed" | "running low" | undefined } {
    const data = this.take(dirKey, name, key, attr);
    const now = this.#now();
    if (data !== undefined) this.#servedAt = now;
    let dir = this.#dirs.get(dirKey);
    if (dir === undefined) {
      if (this.#dirs.size >= MAX_DIRS) this.#forgetIdleDir();
      dir = {
        opened: new Set(),
        misses: 0,
        at: now,
        held: 0,
        fetching: undefined,
        fruitless: false,
      };
      this.#dirs.set(dirKey, dir);
    } else if (now - dir.at > IN_A_ROW_MS) {
      dir.misses = 0; // not in a row: another pass, whose files may no longer be in the kernel
      dir.opened.clear();
    }
    this.#sawOpen(dir, name, now);
    if (data === undefined) dir.misses++;
    if (dir.fetching !== undefined || dir.fruitless) return { data, fetch: undefined };
    // While read ahead serves (a walk opening the files of directory after directory), the
    // first open that finds nothing in a directory is enough.
    const misses = now - this.#servedAt <= IN_A_ROW_MS ? 1 : OPENS_TO_FETCH;
    if (data === undefined && dir.misses >= misses) {
      dir.misses = 0;
      return { data, fetch: "missed" };
    }
    return { data, fetch: data !== undefined ? this.#runningLow(dir) : undefined };
  }

  /**
   * An open of `name` in `dirKey` that the kernel's page cache may serve (its contents were put
   * there when they came): what is held of it is dropped, and counted as served; whether this
   * batch runs low (fetch the next files) as `open` tells.
   */
  served(dirKey: string, name: string): "running low" | undefined {
    const id = `${dirKey}/${name}`;
    const held = this.#held.get(id);
    const dir = this.#dirs.get(dirKey);
    // Not in the kernel's pages: its first read takes it (`open`).
    if (held === undefined || dir === undefined || !held.stored) return undefined;
    this.#drop(id, held);
    const now = this.#now();
    this.#servedAt = now;
    this.#sawOpen(dir, name, now);
    return this.#runningLow(dir);
  }

  #sawOpen(dir: DirState, name: string, now: number): void {
    dir.at = now;
    if (dir.opened.size < MAX_OPENED) dir.opened.add(name);
  }

  /** "running low" when the batch held for `dir` runs out and the next may be asked for. */
  #runningLow(dir: DirState): "running low" | undefined {
    const low = dir.fetching === undefined && !dir.fruitless && dir.held <= REFILL_AT;
    return low ? "running low" : undefined;
  }

  /** The contents held of `name` in `dirKey` were put into the kernel's page cache. */
  stored(dirKey: string, name: string): void {
    const held = this.#held.get(`${dirKey}/${name}`);
    if (held !== undefined) held.stored = true;
  }

  /** True when a fetch in `dirKey` should ask for `name`: neither held nor opened lately. */
  wanted(dirKey: string, name: string): boolean {
    return !this.#held.has(`${dirKey}/${name}`) && !this.#dirs.get(dirKey)?.opened.has(name);
  }

  /**
   * No name of `dirKey` was wanted: every one was opened in this pass. A pass over it again
   * (the kernel may have dropped their pages since) can fetch them again.
   */
  exhausted(dirKey: string): void {
    this.#dirs.get(dirKey)?.opened.clear();
  }

  /** A fetch of `names` in `dirKey` is under way until `done` settles (it never rejects). */
  fetching(dirKey: string, names: readonly string[], done: Promise<void>): void {
    const dir = this.#dirs.get(dirKey);
    if (dir === undefined) return;
    const entry = { names: new Set(names), done };
    dir.fetching = entry;
    done.finally(() => {
      if (dir.fetching === entry) dir.fetching = undefined;
    });
  }

  /** Keeps what a fetch asked for at `askedAt` brought: `files[i]` is `names[i]`'s. */
  offer(
    dirKey: string,
    names: readonly string[],
    files: readonly (WholeFile | undefined)[],
    keyOf: (file: WholeFile) => string,
    askedAt: number,
  ): void {
    const dir = this.#dirs.get(dirKey);
    if (dir === undefined) return; // cleared since it was asked
    dir.fruitless = files.every((file) => file === undefined);
    for (let i = 0; i < names.length && i < files.length; i++) {
      const file = files[i];
      if (file === undefined || file.data.length > this.#maxBytes) continue;
      const id = `${dirKey}/${names[i]}`;
      const old = this.#held.get(id);
      if (old !== undefined) this.#drop(id, old);
      while (this.#bytes + file.data.length > this.#maxBytes) {
        const [oldest, held] = this.#held.entries().next().value!;
        this.#drop(oldest, held);
      }
      this.#held.set(id, {
        dirKey,
        key: keyOf(file),
        size: file.data.length,
        mtimeSec: file.stat.mtimeSec,
        mtimeNsec: file.stat.mtimeNsec,
        data: file.data,
        askedAt,
        stored: false,
      });
      this.#bytes += file.data.length;
      dir.held++;
    }
  }

  /**
   * Forgets what is held of directory `dirKey` (a change in it told by the feed) and of the inode
   * `childKey` wherever it was listed.
   */
  dropDir(dirKey: string, childKey?: string): void {
    for (const [id, held] of this.#held) {
      if (held.dirKey === dirKey || held.key === childKey) this.#drop(id, held);
    }
  }

  /** Forgets every content held (a change, an event, a reconnect), and fetches under way. */
  clear(): void {
    // At every change: an empty table is left as it is (clearing one allocates a new one).
    if (this.#held.size > 0) this.#held.clear();
    this.#bytes = 0;
    if (this.#dirs.size > 0) this.#dirs.clear();
    this.#servedAt = -Infinity;
  }

  /** The contents of `name` in `dirKey` for an open of `key` with `attr` (see `open`), taken. */
  take(dirKey: string, name: string, key: string, attr: Attr): Uint8Array | undefined {
    const id = `${dirKey}/${name}`;
    const held = this.#held.get(id);
    if (held === undefined) return undefined;
    this.#drop(id, held);
    const fresh = held.askedAt + this.#ttlMs > this.#now() || this.#watched(dirKey);
    const same = held.key === key && held.size === attr.size &&
      held.mtimeSec === attr.mtime.sec && held.mtimeNsec === attr.mtime.nsec;
    return fresh && same ? held.data : undefined;
  }

  #drop(id: string, held: Held): void {
    this.#held.delete(id);
    this.#bytes -= held.data.length;
    const dir = this.#dirs.get(held.dirKey);
    if (dir !== undefined) dir.held--;
  }

  /** Makes room for one more directory: the one opened least lately with nothing held. */
  #forgetIdleDir(): void {
    let idle: string | undefined;
    let at = Infinity;
    for (const [key, dir] of this.#dirs) {
      if (dir.held === 0 && dir.fetching === undefined && dir.at < at) [idle, at] = [key, dir.at];
    }
    if (idle !== undefined) this.#dirs.delete(idle);
    else this.clear();
  }
}
