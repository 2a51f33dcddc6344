/**
 * Listing ahead: right after a directory is listed, its subdirectories (on the same filesystem)
 * are listed in the background, so a walk (find, ls -R, grep -r, du, rm -r) finds the next
 * listing ready while the client and the satellite work in parallel.
 *
 * Invariants:
 * - A listing is kept only when it is whole (one batch up to eof) and no change was made through
 *   the mount while it was fetched (`MountChanges`); `drop()` forgets everything at a change.
 * - A listing serves one opendir, within `ttlMs` of when the satellite made it, as the kernel's
 *   own caches would; then it is gone.
 * - At most `inFlight` listings are fetched at once (a user's request waits behind at most
 *   these), and at most `queueLimit` directories are queued or kept.
 * - Mount points (another device than the listed directory's) are never walked into.
 *
 * @module
 */

import { DT_DIR } from "../linux/mod.ts";
import type { DirEntry as WireDirEntry, RpcCalls } from "../protocol/mod.ts";
import { nameProblem, statKey, statProblem } from "./checks.ts";
import type { MountChanges } from "./mount_changes.ts";

/** A listing fetched ahead: the first batch of a directory and when the satellite made it. */
export interface AheadListing {
  readonly entries: readonly WireDirEntry[];
  /** Time (ms) of the answer. */
  readonly at: number;
}

/** Options of {@link ListAhead}. */
export interface ListAheadOptions {
  /** How long (ms) a listing may serve after it was made; 0 disables listing ahead. */
  ttlMs: number;
  /** Entries asked per directory. */
  batch: number;
  /** Listings fetched at once (default 2). */
  inFlight?: number;
  /** Directories queued or kept at most (default 1024). */
  queueLimit?: number;
  /** The clock (ms); `Date.now` by default. */
  now?: () => number;
}

interface Slot {
  readonly path: string;
  done?: AheadListing;
  running?: Promise<void>;
}

/** Lists subdirectories ahead of the kernel's requests. */
export class ListAhead {
  readonly #rpc: () => Pick<RpcCalls, "opendir" | "release">;
  readonly #changes: MountChanges;
  readonly #ttlMs: number;
  readonly #batch: number;
  readonly #inFlight: number;
  readonly #queueLimit: number;
  readonly #now: () => number;
  /** Directory key → its listing (queued, running or done). */
  readonly #slots = new Map<string, Slot>();
  /** Keys of `#slots` waiting to be fetched, in order. */
  #queue: string[] = [];
  #running = 0;

  /**
   * `rpc`: the calls, or a function giving those of the current connection (a handle is released
   * through the connection that opened it).
   */
  constructor(
    rpc: Pick<RpcCalls, "opendir" | "release"> | (() => Pick<RpcCalls, "opendir" | "release">),
    changes: MountChanges,
    options: ListAheadOptions,
  ) {
    this.#rpc = typeof rpc === "function" ? rpc : () => rpc;
    this.#changes = changes;
    this.#ttlMs = options.ttlMs;
    this.#batch = options.batch;
    this.#inFlight = options.inFlight ?? 2;
    this.#queueLimit = options.queueLimit ?? 1024;
    this.#now = options.now ?? Date.now;
  }

  /** Directories queued, running or kept. */
  get size(): number {
    return this.#slots.size;
  }

  /**
   * Queues the subdirectories among `entries` — the whole listing of the directory `dirKey` at
   * protocol path `path` — for listing ahead.
   */
  queue(dirKey: string, path: string, entries: readonly WireDirEntry[]): void {
    if (this.#ttlMs <= 0) return;
    const dev = dirKey.slice(0, dirKey.lastIndexOf(":") + 1);
    for (const e of entries) {
      if (e.type !== DT_DIR || e.stat === undefined || typeof e.name !== "string") continue;
      if (e.name === "." || e.name === ".." || nameProblem(e.name) !== undefined) continue;
      if (statProblem(e.stat) !== undefined) continue;
      const key = statKey(e.stat);
      if (!key.startsWith(dev) || this.#slots.has(key)) continue;
      if (this.#slots.size >= this.#queueLimit) break;
      this.#slots.set(key, { path: path === "" ? e.name : `${path}/${e.name}` });
      this.#queue.push(key);
    }
    this.#pump();
  }

  /** The listing of `key` fetched ahead and still fresh (waiting for it if under way). */
  async take(key: string): Promise<AheadListing | undefined> {
    const slot = this.#slots.get(key);
    if (slot === undefined) return undefined;
    if (slot.running !== undefined) await slot.running;
    // Dropped and queued again while we waited: leave the new slot alone.
    if (this.#slots.get(key) === slot) this.#slots.delete(key);
    const done = slot.done;
    if (done === undefined || this.#now() - done.at >= this.#ttlMs) return undefined;
    return done;
  }

  /** Forgets every listing fetched or queued (something changed through the mount). */
  drop(): void {
    if (this.#slots.size === 0) return;
    this.#slots.clear();
    this.#queue = [];
  }

  #pump(): void {
    while (this.#running < this.#inFlight && this.#queue.length > 0) {
      const key = this.#queue.shift()!;
      const slot = this.#slots.get(key);
      if (slot === undefined || slot.done !== undefined || slot.running !== undefined) continue;
      this.#running++;
      slot.running = this.#fetch(key, slot).finally(() => {
        this.#running--;
        slot.running = undefined;
        this.#pump();
      });
    }
  }

  async #fetch(key: string, slot: Slot): Promise<void> {
    const changes = this.#changes.mark(); // a change under way may or may not be seen
    const rpc = this.#rpc();
    const r = await rpc.opendir({ path: slot.path, readAhead: this.#batch });
    if (!r.ok) {
      if (this.#slots.get(key) === slot) this.#slots.delete(key);
      return;
    }
    void rpc.release({ handle: r.value.handle });
    const whole = r.value.eof === true && r.value.entries !== undefined;
    if (this.#slots.get(key) !== slot || !whole || this.#changes.count !== changes) {
      if (this.#slots.get(key) === slot) this.#slots.delete(key);
      return;
    }
    slot.done = { entries: r.value.entries!, at: this.#now() };
  }
}
