/**
 * A Map that holds at most `limit` entries: setting a new key beyond it evicts the oldest one
 * (insertion order; setting a key again makes it the newest). Each cache of the filesystem has
 * its own bound.
 *
 * @module
 */

/** A Map of at most `limit` entries, evicting the oldest. */
export class BoundedMap<K, V> extends Map<K, V> {
  readonly #limit: number;
  /**
   * Walks the keys oldest first, one step per eviction. Every key it has passed was evicted or
   * deleted (a key set again moves behind every other), so its next key is the oldest one. One
   * iterator for the map's life: asking a new one each time scans the deleted slots V8 keeps at
   * the front until it compacts, which made a full map 6× slower to fill.
   */
  #oldest: Iterator<K> | undefined;

  constructor(limit: number) {
    super();
    if (!(limit >= 1)) throw new RangeError(`Cannot bound a map to ${limit} entries`);
    this.#limit = limit;
  }

  /** The most entries kept. */
  get limit(): number {
    return this.#limit;
  }

  override set(key: K, value: V): this {
    // `super()` calls nothing here (no initial entries), so the fields are always set.
    if (!super.delete(key) && this.size >= this.#limit) {
      this.#oldest ??= this.keys();
      super.delete(this.#oldest.next().value as K);
    }
    return super.set(key, value);
  }

  override clear(): void {
    super.clear();
    this.#oldest = undefined;
  }
}
