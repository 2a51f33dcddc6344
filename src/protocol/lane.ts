/**
 * The bulk lane of the RPC client: calls that carry or fetch a large payload (1 MiB reads and
 * writes) are let onto the stream only while fewer than `limitBytes` of them are in flight;
 * the others wait here, in order. Small calls never enter the lane, so a `lstat` never queues
 * behind more than `limitBytes` of bulk data, in either direction of the stream.
 *
 * Invariants:
 * - Bulk calls start in the order they entered (FIFO), never overtaking one another.
 * - A call starts at once when nobody waits and it fits (or nothing is in flight: one call
 *   larger than the limit still goes, alone).
 * - `inFlight` counts the bytes of started calls until `leave` (their answer, or failure).
 *
 * @module
 */

interface Waiting {
  readonly cost: number;
  readonly start: () => void;
}

/** A FIFO admission gate bounded by bytes in flight. */
export class BulkLane {
  readonly #limitBytes: number;
  #inFlight = 0;
  #waiting: Waiting[] = [];

  constructor(limitBytes: number) {
    this.#limitBytes = limitBytes;
  }

  /** Bytes of started calls not yet left. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Calls waiting to start. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Starts a call of `cost` bytes (`start` runs synchronously) or queues it. Returns a
   * function that withdraws it while it still waits (true), or false once it has started.
   */
  enter(cost: number, start: () => void): () => boolean {
    const entry: Waiting = { cost, start };
    if (this.#waiting.length === 0 && this.#fits(cost)) {
      this.#inFlight += cost;
      start();
      return () => false;
    }
    this.#waiting.push(entry);
    return () => {
      const i = this.#waiting.indexOf(entry);
      if (i < 0) return false;
      this.#waiting.splice(i, 1);
      if (i === 0) this.#pump(); // the next one may fit now
      return true;
    };
  }

  /** A started call of `cost` bytes ended: waiting calls start, in order, while they fit. */
  leave(cost: number): void {
    this.#inFlight = Math.max(0, this.#inFlight - cost);
    this.#pump();
  }

  /** Forgets every waiting call (the connection ended; their callers are failed elsewhere). */
  clear(): void {
    this.#waiting = [];
  }

  #fits(cost: number): boolean {
    return this.#inFlight === 0 || this.#inFlight + cost <= this.#limitBytes;
  }

  #pump(): void {
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0].cost)) {
      const next = this.#waiting.shift()!;
      this.#inFlight += next.cost;
      next.start();
    }
  }
}
