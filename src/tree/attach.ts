/**
 * Attachments on demand: at most `max` satellites at once, each detached after `idleMs` without
 * use, the least recently used idle one detached first when another is needed.
 *
 * Invariants:
 * - Attaching and attached slots together never exceed `max`: a new attachment first detaches
 *   an idle one (no lease), else waits for a lease to end; when every slot holds an open file's
 *   lease (which may last forever) it fails with `AttachBusyError` instead of waiting.
 * - A slot with a lease is never detached for idleness or LRU; `detach(key)` (the object went
 *   away) and `closeAll()` detach regardless, and their leases report `alive === false`.
 * - One attachment per key at a time: concurrent acquires of a key share one `open()`.
 *
 * @module
 */

/** Something attached: a filesystem served until `close()` or its own end. */
export interface Attachment<F> {
  readonly fs: F;
  /** Resolves when it ended by itself (the satellite or its container went away). */
  readonly ended: Promise<unknown>;
  /** Stops it; idempotent. */
  close(): Promise<void>;
}

/** A use of an attachment; `release()` once done (idempotent). */
export interface Lease<F> {
  readonly attachment: Attachment<F>;
  /** False once the attachment was detached or ended. */
  readonly alive: boolean;
  release(): void;
}

/** Why an attachment ended. */
export type DetachReason = "idle" | "lru" | "gone" | "lost" | "closing";

/** Options of {@link AttachManager}. */
export interface AttachManagerOptions {
  /** Milliseconds without a lease before detaching. */
  idleMs: number;
  /** Attachments at most (>= 1). */
  max: number;
  /** Called after an attachment ended (for kernel cache invalidation and logs). */
  onDetach?: (key: string, reason: DetachReason) => void;
  /** Timer (injected for tests); returns a cancel function. */
  schedule?: (fn: () => void, ms: number) => () => void;
}

/** Every slot is held by an open file: no satellite can be detached to make room. */
export class AttachBusyError extends Error {
  constructor(max: number) {
    super(`Cannot attach: all ${max} attached satellites have open files`);
    this.name = "AttachBusyError";
  }
}

interface Slot<F> {
  key: string;
  attaching?: Promise<Attachment<F>>;
  attachment?: Attachment<F>;
  leases: number;
  /** Leases held for open files (long-lived). */
  handleLeases: number;
  lastUsed: number;
  cancelIdle?: () => void;
  dead: boolean;
}

function defaultSchedule(fn: () => void, ms: number): () => void {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
}

/** See the module invariants. */
export class AttachManager<F> {
  readonly #options: AttachManagerOptions;
  readonly #schedule: (fn: () => void, ms: number) => () => void;
  readonly #slots = new Map<string, Slot<F>>();
  #tick = 0;
  #waiters: (() => void)[] = [];
  #closed = false;
  /** Most attachments alive at once (for reports and tests). */
  peak = 0;

  constructor(options: AttachManagerOptions) {
    if (!(options.max >= 1)) throw new RangeError("max must be at least 1");
    this.#options = options;
    this.#schedule = options.schedule ?? defaultSchedule;
  }

  /** Keys attached or attaching now. */
  get keys(): string[] {
    return [...this.#slots.keys()];
  }

  /** Whether `key` is attached (not merely attaching). */
  attached(key: string): boolean {
    return this.#slots.get(key)?.attachment !== undefined;
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Makes room for one more slot (see invariants). */
  async #room(): Promise<void> {
    while (this.#slots.size >= this.#options.max) {
      let victim: Slot<F> | undefined;
      for (const slot of this.#slots.values()) {
        if (slot.attachment === undefined || slot.leases > 0) continue;
        if (victim === undefined || slot.lastUsed < victim.lastUsed) victim = slot;
      }
      if (victim !== undefined) {
        await this.#detachSlot(victim, "lru");
        continue;
      }
      const all = [...this.#slots.values()];
      if (all.every((s) => s.attachment !== undefined && s.handleLeases > 0)) {
        throw new AttachBusyError(this.#options.max);
      }
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /**
   * A lease on `key`'s attachment, attaching it with `open()` when needed. `forHandle`: held
   * for an open file (see invariants). Throws what `open()` threw, or `AttachBusyError`.
   */
  async acquire(
    key: string,
    open: () => Promise<Attachment<F>>,
    forHandle = false,
  ): Promise<Lease<F>> {
    if (this.#closed) throw new Error("Cannot attach: the tree is closing");
    let slot = this.#slots.get(key);
    while (slot === undefined) {
      await this.#room();
      slot = this.#slots.get(key); // someone else may have attached it meanwhile
      if (slot !== undefined) break;
      if (this.#slots.size >= this.#options.max) continue;
      const fresh: Slot<F> = {
        key,
        leases: 0,
        handleLeases: 0,
        lastUsed: ++this.#tick,
        dead: false,
      };
      fresh.attaching = open().then((attachment) => {
        fresh.attachment = attachment;
        fresh.attaching = undefined;
        attachment.ended.then(() => {
          if (this.#slots.get(key) === fresh && !fresh.dead) {
            fresh.dead = true;
            this.#forget(fresh, "lost");
          }
        });
        return attachment;
      }, (error) => {
        this.#slots.delete(key);
        this.#wake();
        throw error;
      });
      this.#slots.set(key, fresh);
      this.peak = Math.max(this.peak, this.#slots.size);
      slot = fresh;
    }
    slot.leases++;
    if (forHandle) slot.handleLeases++;
    slot.cancelIdle?.();
    slot.cancelIdle = undefined;
    let attachment: Attachment<F>;
    try {
      attachment = slot.attachment ?? await slot.attaching!;
    } catch (error) {
      slot.leases--;
      if (forHandle) slot.handleLeases--;
      throw error;
    }
    slot.lastUsed = ++this.#tick;
    const owner = slot;
    let released = false;
    return {
      attachment,
      get alive(): boolean {
        return !owner.dead;
      },
      release: () => {
        if (released) return;
        released = true;
        owner.leases--;
        if (forHandle) owner.handleLeases--;
        owner.lastUsed = ++this.#tick;
        if (owner.leases === 0 && !owner.dead) {
          owner.cancelIdle = this.#schedule(() => {
            owner.cancelIdle = undefined;
            if (owner.leases === 0 && !owner.dead) void this.#detachSlot(owner, "idle");
          }, this.#options.idleMs);
        }
        this.#wake();
      },
    };
  }

  #forget(slot: Slot<F>, reason: DetachReason): void {
    slot.cancelIdle?.();
    slot.cancelIdle = undefined;
    if (this.#slots.get(slot.key) === slot) this.#slots.delete(slot.key);
    this.#options.onDetach?.(slot.key, reason);
    this.#wake();
  }

  async #detachSlot(slot: Slot<F>, reason: DetachReason): Promise<void> {
    if (slot.dead) return;
    slot.dead = true;
    this.#slots.delete(slot.key);
    const attachment = slot.attachment ?? await slot.attaching?.catch(() => undefined);
    await attachment?.close().catch(() => {});
    this.#forget(slot, reason);
  }

  /** Detaches `key` now, leases or not (the object went away). */
  async detach(key: string, reason: DetachReason = "gone"): Promise<void> {
    const slot = this.#slots.get(key);
    if (slot !== undefined) await this.#detachSlot(slot, reason);
  }

  /** Detaches everything and refuses new attachments. */
  async closeAll(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#slots.values()].map((s) => this.#detachSlot(s, "closing")));
  }
}
