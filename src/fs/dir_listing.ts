/**
 * One open directory's stream, as the kernel reads it.
 *
 * Invariants:
 * - Cookies given to the kernel are positions (entries before it), dense from 0; `cookies[k]`
 *   is the satellite's own cookie that resumes after k entries (ext4's are 63-bit hashes,
 *   which a position keeps exact).
 * - Only entries the kernel accepts are shown (the satellite is untrusted): names that pass
 *   `nameProblem`, "." and ".." only as directories and without attributes, and each name at
 *   one position only (a duplicate is dropped; reading a position again shows it again).
 *
 * @module
 */

import type { DirEntry, Entry } from "../fuse/mod.ts";
import {
  DT_BLK,
  DT_CHR,
  DT_DIR,
  DT_FIFO,
  DT_LNK,
  DT_REG,
  DT_SOCK,
  DT_UNKNOWN,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_IFSOCK,
} from "../linux/mod.ts";
import type { DirEntry as WireDirEntry } from "../protocol/mod.ts";
import type { Stat } from "../protocol/mod.ts";
import { nameProblem, statProblem } from "./checks.ts";
import { ATTR_CACHE_LIMITS, type ListedNames } from "./attr_cache.ts";

const DT_TO_IFMT: Readonly<Record<number, number>> = {
  [DT_FIFO]: S_IFIFO,
  [DT_CHR]: S_IFCHR,
  [DT_DIR]: S_IFDIR,
  [DT_BLK]: S_IFBLK,
  [DT_REG]: S_IFREG,
  [DT_LNK]: S_IFLNK,
  [DT_SOCK]: S_IFSOCK,
};

/** A listing entry whose name passed the checks. */
export type ShownEntry = WireDirEntry & { readonly name: string };

/** Why a listing entry was dropped (for the log). */
export type DropReason = string;

/** The stream of one open directory. */
export class DirListing implements ListedNames {
  readonly cookies: bigint[] = [0n];
  /** Entries of the last batch, from position `bufferStart`. */
  buffer: DirEntry[] = [];
  bufferStart = 0;
  /**
   * The change feed's event count before the buffer's entries were read (set by the owner): an
   * event after it makes the entries' timeouts stale.
   */
  since: number | undefined;
  /** Position where the stream ends, once the satellite said so. */
  end: number | undefined;
  /** Name → the position it is shown at. */
  readonly #shownAt = new Map<string, number>();
  /**
   * The satellite's entry shown at each position, for `statOf`: the first
   * `ATTR_CACHE_LIMITS.listed` only (a larger listing answers no LOOKUP, and a huge directory
   * read batch by batch keeps its names but not every entry).
   */
  readonly #shown: WireDirEntry[] = [];
  /** Positions [0, covered) were all read. */
  #covered = 0;
  /** Some entry was left out (its name is not known to be absent). */
  #droppedAny = false;
  /** When (ms) the satellite made the first batch, set by the owner. */
  madeAt: number | undefined;
  /** `MountChanges.mark()` before the first batch was asked, set by the owner (undefined: a
   * change was under way, or not known: the listing does not tell which names are absent). */
  changesAt: number | undefined;
  /**
   * `MountChanges.mark()` before the buffer's batch was asked, set by the owner: its entries'
   * attributes (and inode keys) hold only while no change through the mount came since.
   */
  bufferAsked: number | undefined;

  /**
   * Every position up to the end was read and no entry was left out: `names()` are all the
   * directory's names (as of the batches).
   */
  get complete(): boolean {
    return this.end !== undefined && this.#covered >= this.end && !this.#droppedAny;
  }

  /** Names shown so far. */
  names(): Iterable<string> {
    return this.#shownAt.keys();
  }

  /** How many names were shown so far. */
  get size(): number {
    return this.#shownAt.size;
  }

  /** The attributes `name` was shown with, when it was and they pass the checks. */
  statOf(name: string): Stat | undefined {
    const at = this.#shownAt.get(name);
    const stat = at === undefined ? undefined : this.#shown[at]?.stat;
    return stat === undefined || statProblem(stat) !== undefined ? undefined : stat;
  }

  /**
   * Makes `entries` (read from position `offset`) the buffer; `describe` gives the READDIRPLUS
   * entry of a shown name (undefined: none), `dropped` hears of each entry left out. False when
   * none can be shown and the stream goes on: the caller reads further.
   */
  fill(
    offset: number,
    entries: readonly WireDirEntry[],
    eof: boolean,
    describe: (e: ShownEntry) => Entry | undefined,
    dropped: (e: WireDirEntry, reason: DropReason) => void,
  ): boolean {
    const buffer: DirEntry[] = [];
    for (const e of entries) {
      const problem = this.#problem(e, offset + buffer.length);
      if (problem !== undefined) {
        if (problem !== "duplicate") this.#droppedAny = true;
        dropped(e, problem);
        continue;
      }
      const shown = e as ShownEntry;
      const dot = shown.name === "." || shown.name === "..";
      const next = offset + buffer.length + 1;
      this.cookies[next] = e.offset;
      this.#shownAt.set(shown.name, next - 1);
      if (next <= ATTR_CACHE_LIMITS.listed) this.#shown[next - 1] = e;
      buffer.push({
        name: shown.name,
        ino: e.ino,
        mode: DT_TO_IFMT[e.type] ?? 0,
        next,
        entry: dot ? undefined : describe(shown),
      });
    }
    if (buffer.length === 0 && !eof) return false;
    this.buffer = buffer;
    this.bufferStart = offset;
    if (offset <= this.#covered) this.#covered = Math.max(this.#covered, offset + buffer.length);
    if (eof) this.end = offset + buffer.length;
    return true;
  }

  #problem(e: WireDirEntry, position: number): DropReason | undefined {
    const problem = nameProblem(e.name);
    if (problem !== undefined) return problem;
    const name = e.name as string;
    if ((name === "." || name === "..") && e.type !== DT_DIR && e.type !== DT_UNKNOWN) {
      return `'${name}' that is not a directory`;
    }
    const at = this.#shownAt.get(name);
    if (at !== undefined && at !== position) return "duplicate";
    return undefined;
  }
}
