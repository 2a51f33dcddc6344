/**
 * The open files of one mount, by inode, and the first bytes each open read ahead.
 *
 * Invariants:
 * - A file handle is registered under its inode's key from open/create until release: the
 *   attributes of an unlinked file come through one of them (fstat), and the kernel's writeback
 *   cache writes through any of them.
 * - An open's read-ahead serves READs within `ttlMs` of the open and only while the file is not
 *   changed through the mount: `changed(key)` drops it from every handle of the inode, and one
 *   whose open raced a change (`MountChanges` moved during the round trip) is never kept.
 *
 * @module
 */

import type { MountChanges } from "./mount_changes.ts";

/** The first bytes of a file, read along with its open. */
export interface ReadAhead {
  readonly data: Uint8Array;
  /** Until when (ms) they may serve READs. */
  readonly until: number;
  /** `data` holds the whole file (the read-ahead came back short). */
  readonly eof: boolean;
}

/** What the registry needs of a file handle. */
export interface OpenFile {
  /** Identity of the inode (`Entry.key`). */
  readonly key: string;
  readAhead?: ReadAhead;
}

/** Options of {@link OpenFiles}. */
export interface OpenFilesOptions {
  /** How long (ms) a read-ahead serves after its open: the attribute timeout. */
  ttlMs: number;
  /** The clock (ms); `Date.now` by default. */
  now?: () => number;
}

/** Open file handles by inode, with their read-ahead. */
export class OpenFiles<H extends OpenFile> {
  readonly #byKey = new Map<string, Set<H>>();
  readonly #changes: MountChanges;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(changes: MountChanges, options: OpenFilesOptions) {
    this.#changes = changes;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  /** Registers `handle` (an open or create answered it). */
  add(handle: H): H {
    const set = this.#byKey.get(handle.key) ?? new Set();
    set.add(handle);
    this.#byKey.set(handle.key, set);
    return handle;
  }

  /** Unregisters `handle` (it is released). */
  remove(handle: H): void {
    const set = this.#byKey.get(handle.key);
    set?.delete(handle);
    if (set?.size === 0) this.#byKey.delete(handle.key);
  }

  /** The handles open on the inode `key`. */
  of(key: string): H[] {
    return [...this.#byKey.get(key) ?? []];
  }

  /** One handle open on the inode `key`, if any. */
  any(key: string): H | undefined {
    return this.#byKey.get(key)?.values().next().value;
  }

  /** Taken before an open's round trip; given back to {@link keepReadAhead}. */
  mark(): number {
    return this.#changes.count;
  }

  /**
   * Keeps `data`, read ahead by the open of `handle` (which asked for `asked` bytes), unless
   * something changed through the mount since `mark`: it may predate the change.
   */
  keepReadAhead(handle: H, data: Uint8Array, asked: number, mark: number): void {
    if (this.#ttlMs <= 0 || this.#changes.count !== mark) return;
    handle.readAhead = { data, eof: data.length < asked, until: this.#now() + this.#ttlMs };
  }

  /** `data` is the whole file as of now (no change through the mount in between): kept as above. */
  keepWhole(handle: H, data: Uint8Array): void {
    this.keepReadAhead(handle, data, data.length + 1, this.mark());
  }

  /** The bytes [offset, offset + size) from `handle`'s read-ahead, when it holds them. */
  read(handle: H, offset: number, size: number): Uint8Array | undefined {
    const ahead = handle.readAhead;
    if (ahead === undefined) return undefined;
    if (ahead.until <= this.#now()) {
      handle.readAhead = undefined;
      return undefined;
    }
    const { data } = ahead;
    if (offset + size <= data.length || (ahead.eof && offset <= data.length)) {
      return data.subarray(offset, Math.min(offset + size, data.length));
    }
    return undefined;
  }

  /** The contents of the inode `key` change: its handles' read-ahead is stale. */
  changed(key: string): void {
    for (const handle of this.#byKey.get(key) ?? []) handle.readAhead = undefined;
  }
}
