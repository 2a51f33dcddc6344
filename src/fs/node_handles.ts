/**
 * The satellite's node handles as the client keeps them: by node key (the inode's identity),
 * for the connection that issued them.
 *
 * Invariants:
 * - A key has at most one handle; a second one issued for it is given back at once.
 * - A handle is given back (`forget`, batched) when the kernel forgets the key's node, or when
 *   a call found it stale; handles of an earlier connection are dropped unseen (that satellite
 *   and its descriptors are gone).
 * - A place (`where`) is relative to the nearest node that has a handle, the node itself
 *   included, else to the root: an operation in a directory that was renamed reaches it by its
 *   handle, whatever path the client last knew for it.
 *
 * @module
 */

import type { Node } from "../fuse/mod.ts";
import { MAX_FORGET } from "../protocol/mod.ts";

/** A place for the satellite: a path relative to node handle `at` (absent: the root). */
export interface Where {
  at?: number;
  path: string;
}

/** Deepest chain of names `where` follows (a cycle in a corrupted chain ends there). */
const MAX_WHERE_DEPTH = 1 << 16;

/** What the map needs of the connection. */
export interface NodeHandleLink {
  /** The current connection's number. */
  readonly generation: number;
  /** Gives handles of connection `generation` back to its satellite. */
  forget(generation: number, ids: number[]): void;
}

/** The node handles of a mount. */
export class NodeHandles {
  readonly #link: NodeHandleLink;
  readonly #byKey = new Map<string, number>();
  readonly #keyOf = new Map<number, string>();
  #generation: number;
  #pending: number[] = [];
  #flushQueued = false;

  constructor(link: NodeHandleLink) {
    this.#link = link;
    this.#generation = link.generation;
  }

  /** Handles held. */
  get size(): number {
    this.#sync();
    return this.#byKey.size;
  }

  /** Whether key `key` has a handle. */
  has(key: string): boolean {
    this.#sync();
    return this.#byKey.has(key);
  }

  /** Keeps handle `id`, issued by the current connection for inode `key`. */
  issued(key: string, id: number): void {
    this.#sync();
    if (this.#byKey.has(key) || this.#keyOf.has(id)) return this.#giveBack(id);
    this.#byKey.set(key, id);
    this.#keyOf.set(id, key);
  }

  /** Gives back handle `id`, issued for an inode the client does not keep. */
  release(id: number): void {
    this.#sync();
    this.#giveBack(id);
  }

  /** The kernel forgot `key`'s node: its handle goes back. */
  forget(key: string): void {
    this.#sync();
    const id = this.#byKey.get(key);
    if (id !== undefined) this.#drop(key, id);
  }

  /** A call answered ESTALE for handle `id`: it is not used again. */
  stale(id: number): void {
    this.#sync();
    const key = this.#keyOf.get(id);
    if (key !== undefined) this.#drop(key, id);
  }

  /** Forgets that `key` has handle `id`, and gives it back. */
  #drop(key: string, id: number): void {
    this.#byKey.delete(key);
    this.#keyOf.delete(id);
    this.#giveBack(id);
  }

  /**
   * Where `node` is (`name` in it, when given), relative to the nearest handle on its chain of
   * names (none with `fromRoot`); undefined when the chain ends at an unlinked node.
   */
  where(node: Node, name?: string, fromRoot = false): Where | undefined {
    this.#sync();
    let path = name ?? "";
    let n: Node = node;
    for (let depth = 0; depth < MAX_WHERE_DEPTH; depth++) {
      const parent = n.parent;
      // The root (its path "/") needs no handle; another node without a parent is unlinked.
      const root = parent === undefined && n.path === "/";
      const at = fromRoot || root ? undefined : this.#byKey.get(n.key);
      if (at !== undefined) return { at, path };
      if (parent === undefined) return root ? { path } : undefined;
      path = path === "" ? n.name : `${n.name}/${path}`;
      n = parent;
    }
    return undefined;
  }

  /** Drops what belongs to an earlier connection. */
  #sync(): void {
    const generation = this.#link.generation;
    if (generation === this.#generation) return;
    this.#generation = generation;
    this.#byKey.clear();
    this.#keyOf.clear();
    this.#pending = [];
  }

  /** Queues `id` for the next `forget` (sent once the current task is done, in batches). */
  #giveBack(id: number): void {
    this.#pending.push(id);
    if (this.#pending.length >= MAX_FORGET) return this.#flush();
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#pending.length === 0) return;
    const ids = this.#pending;
    this.#pending = [];
    this.#link.forget(this.#generation, ids);
  }
}
