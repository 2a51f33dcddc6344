/**
 * The one count of changes made through the mount.
 *
 * Invariant: every operation that changes the container's filesystem through the mount (data,
 * attributes, names, xattrs) calls `note()` before its round trip. Work that started before a
 * change and finishes after it — an open's read-ahead, a listing fetched ahead — compares
 * `count` around its round trip and is not kept when it moved.
 *
 * @module
 */

/** Counts changes made through the mount. */
export class MountChanges {
  #count = 0;

  /** Changes noted so far. */
  get count(): number {
    return this.#count;
  }

  /** Something is changed through the mount. */
  note(): void {
    this.#count++;
  }
}
