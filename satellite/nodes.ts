/**
 * Node handles: descriptors of directories the client's kernel knows, that the client's later
 * paths are relative to (the protocol's `at`), so an operation in a directory reaches that
 * directory even after it was renamed, and no path grows longer than one name.
 *
 * Invariants:
 * - A handle holds its descriptor until `forget` (or exit): the inode stays pinned, so its
 *   number cannot be reused by another while the client may name it.
 * - An inode has one handle however often it is answered (its identity, dev and inode number,
 *   finds it); each answer counts once and is given back by one `forget` of its id, so the
 *   descriptor is closed when every answer was.
 * - At most `budget` handles are held; past it none is issued and the client names the
 *   directory by its path from the nearest ancestor that has one (the root at worst).
 * - An id is this satellite's random 32-bit epoch times 2^21 plus a counter (a safe integer): a
 *   handle of an earlier satellite (a call sent again after a reconnect) is unknown here but
 *   with odds of 2^-32, and fails ESTALE instead of naming another directory.
 *
 * @module
 */

/** Most node handles held whatever the descriptor limit. */
export const MAX_NODE_BUDGET = 65536;
/** Ids one epoch numbers (a counter of 21 bits, above the budget many times over). */
const EPOCH_IDS = 1 << 21;

/**
 * The budget a descriptor limit allows: half of it (the rest is for open files, listings and
 * the runtime), at most MAX_NODE_BUDGET.
 */
export function nodeBudgetFor(fdLimit: number): number {
  if (!(fdLimit > 0)) return 0;
  return Math.min(MAX_NODE_BUDGET, Math.floor(fdLimit / 2));
}

/** The node handles of one satellite. */
export class NodeHandles {
  readonly #fds = new Map<number, number>();
  /** Answers not given back yet, per handle. */
  readonly #refs = new Map<number, number>();
  readonly #identities = new Map<string, number>();
  readonly #identityOf = new Map<number, string>();
  /** The name each handle's directory had when it was issued (the change feed's echoes). */
  readonly #names = new Map<number, Uint8Array>();
  readonly #close: (fd: number) => void;
  readonly #budget: number;
  readonly #epoch: number;
  #counter = 1;

  /** `epoch`: the high part of every id, below 2^32 (random when absent). */
  constructor(budget: number, close: (fd: number) => void, epoch?: number) {
    this.#budget = budget;
    this.#close = close;
    this.#epoch = epoch ?? 1 + Math.floor(Math.random() * 0xfffffffe);
  }

  /** Handles held. */
  get size(): number {
    return this.#fds.size;
  }

  /** Most handles held at once. */
  get budget(): number {
    return this.#budget;
  }

  /** True while another handle may be issued. */
  get available(): boolean {
    return this.#fds.size < this.#budget;
  }

  /** Answers the handle of the inode of `identity` once more, if one is held. */
  again(identity: string): number | undefined {
    const id = this.#identities.get(identity);
    if (id !== undefined) this.#refs.set(id, this.#refs.get(id)! + 1);
    return id;
  }

  /**
   * Takes `fd` as the handle of the inode of `identity` (when given), found under `name`; past
   * the budget, or when that inode has a handle already (then answered again), closes it.
   */
  issue(fd: number, identity?: string, name?: Uint8Array): number | undefined {
    const known = identity === undefined ? undefined : this.again(identity);
    if (known !== undefined || !this.available) {
      this.#close(fd);
      return known;
    }
    let id: number;
    do {
      id = this.#epoch * EPOCH_IDS + this.#counter;
      this.#counter = (this.#counter + 1) % EPOCH_IDS;
    } while (id === 0 || this.#fds.has(id));
    this.#fds.set(id, fd);
    this.#refs.set(id, 1);
    if (name !== undefined) this.#names.set(id, name);
    if (identity !== undefined) {
      this.#identities.set(identity, id);
      this.#identityOf.set(id, identity);
    }
    return id;
  }

  /** The descriptor of handle `id`, if held. */
  fd(id: number): number | undefined {
    return this.#fds.get(id);
  }

  /**
   * What is known of handle `id`'s directory: its identity, and the name it had when the handle
   * was issued (it may have been renamed since). Undefined when not held.
   */
  about(id: number): { identity?: string; name?: Uint8Array } | undefined {
    if (!this.#fds.has(id)) return undefined;
    return { identity: this.#identityOf.get(id), name: this.#names.get(id) };
  }

  /** Gives back one answer of each id; a handle with none left is closed. Unknown ids pass. */
  forget(ids: readonly number[]): void {
    for (const id of ids) {
      const fd = this.#fds.get(id);
      if (fd === undefined) continue;
      const refs = this.#refs.get(id)! - 1;
      if (refs > 0) {
        this.#refs.set(id, refs);
        continue;
      }
      this.#fds.delete(id);
      this.#refs.delete(id);
      this.#names.delete(id);
      const identity = this.#identityOf.get(id);
      if (identity !== undefined) {
        this.#identityOf.delete(id);
        this.#identities.delete(identity);
      }
      this.#close(fd);
    }
  }

  /** Closes every handle (at exit). */
  closeAll(): void {
    for (const fd of this.#fds.values()) this.#close(fd);
    this.#fds.clear();
    this.#refs.clear();
    this.#names.clear();
    this.#identities.clear();
    this.#identityOf.clear();
  }
}
