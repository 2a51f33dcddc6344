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
    // `super()` calls nothing here (no initial entries), so `#limit` is always set.
    if (this.has(key)) this.delete(key);
    else if (this.size >= this.#limit) this.delete(this.keys().next().value as K);
    return super.set(key, value);
  }
}
