/**
 * The one count of changes made through the mount.
 *
 * Invariant: every operation that changes the container's filesystem through the mount (data,
 * attributes, names, xattrs) calls `note()` before its round trip. Work that started before a
 * change and finishes after it — an open's read-ahead, a listing fetched ahead — compares
 * `count` around its round trip and is not kept when it moved.
 * Namespace changes (create, unlink, rename…) are also counted as pending from their start to
 * their answer: a listing asked while one is under way may or may not show it, so `mark()` is
 * undefined then and the listing is not trusted to tell which names are absent.
 *
 * @module
 */

/** Counts changes made through the mount. */
export class MountChanges {
  #count = 0;
  #pending = 0;

  /** Changes noted so far. */
  get count(): number {
    return this.#count;
  }

  /** Something is changed through the mount. */
  note(): void {
    this.#count++;
  }

  /** A namespace change starts (before its `note()`)… */
  begin(): void {
    this.#pending++;
  }

  /** …and was answered. */
  end(): void {
    this.#pending--;
  }

  /** `count` when no namespace change is under way, else undefined (compare with `count`). */
  mark(): number | undefined {
    return this.#pending === 0 ? this.#count : undefined;
  }
}
