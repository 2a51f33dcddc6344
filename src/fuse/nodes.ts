/**
 * The inode table: FUSE node ids, kernel lookup counts, and the (parent, name) links that give
 * each node its current path. See filesystem.ts for the invariants implementations rely on.
 *
 * @module
 */

import { S_IFDIR, S_IFMT } from "../linux/mod.ts";
import { FUSE_ROOT_ID } from "./abi.ts";
import type { Node } from "./filesystem.ts";

/** Most names remembered per node (hard links); older ones are dropped first. */
const MAX_LINKS = 16;
/**
 * Deepest chain walked by `path` (guards against a corrupted, cyclic chain). Trees may be far
 * deeper than PATH_MAX allows in one path (a process descends with relative paths).
 */
const MAX_DEPTH = 65536;

interface Link {
  parent: NodeImpl;
  name: string;
}

/** A node of the table (the layer's view; implementations see it as `Node`). */
export class NodeImpl implements Node {
  readonly nodeId: bigint;
  readonly key: string;
  ino: bigint;
  /** File type bits (S_IFMT) of the object, 0 if not known. */
  type: number;
  data: unknown = undefined;
  /** Kernel lookup count; the node is dropped when FORGET brings it to 0 (root: never). */
  lookups = 0;
  /**
   * The current name: its directory (undefined: none) and name. Kept inline, not as a Link: a
   * node made for a listed entry has one name, so it costs no array and no Link.
   */
  linkParent: NodeImpl | undefined = undefined;
  linkName = "";
  /** Older names (hard links), newest first. */
  olderLinks: Link[] | undefined = undefined;
  /** Children known by name (only for directories that had entries answered). */
  children: Map<string, NodeImpl> | undefined;

  constructor(nodeId: bigint, key: string, ino: bigint, type: number) {
    this.nodeId = nodeId;
    this.key = key;
    this.ino = ino;
    this.type = type;
  }

  get parent(): Node | undefined {
    return this.linkParent;
  }

  get name(): string {
    return this.linkName;
  }

  /** Every known name, current first. */
  links(): Link[] {
    if (this.linkParent === undefined) return [];
    const current = { parent: this.linkParent, name: this.linkName };
    return this.olderLinks === undefined ? [current] : [current, ...this.olderLinks];
  }

  get path(): string | undefined {
    if (this.nodeId === FUSE_ROOT_ID) return "/";
    const names: string[] = [];
    // deno-lint-ignore no-this-alias
    let n: NodeImpl = this;
    for (let depth = 0; depth < MAX_DEPTH; depth++) {
      if (n.nodeId === FUSE_ROOT_ID) {
        let p = "";
        for (let i = names.length - 1; i >= 0; i--) p += "/" + names[i];
        return p;
      }
      const parent: NodeImpl | undefined = n.linkParent;
      if (parent === undefined) return undefined;
      names.push(n.linkName);
      n = parent;
    }
    return undefined;
  }
}

/** Node ids, keys and names of a session. */
export class NodeTable {
  readonly root: NodeImpl;
  /** By node id as a number (ids count up from 2: far below 2^53; number keys hash cheaply). */
  #byId = new Map<number, NodeImpl>();
  #byKey = new Map<string, NodeImpl>();
  #nextId = 2;

  constructor(rootIno: bigint = 1n) {
    this.root = new NodeImpl(FUSE_ROOT_ID, "", rootIno, S_IFDIR);
    this.root.lookups = 1;
    this.#byId.set(Number(FUSE_ROOT_ID), this.root);
  }

  get size(): number {
    return this.#byId.size;
  }

  get(nodeId: bigint): NodeImpl | undefined {
    return this.#byId.get(Number(nodeId));
  }

  /** The node of identity `key` (the root's is ""), if the table holds one. */
  byKey(key: string): NodeImpl | undefined {
    return key === "" ? this.root : this.#byKey.get(key);
  }

  /** Every node but the root. */
  all(): NodeImpl[] {
    return [...this.#byId.values()].filter((n) => n !== this.root);
  }

  /** The node the table knows at (parent, name), if any. */
  child(parent: NodeImpl, name: string): NodeImpl | undefined {
    return parent.children?.get(name);
  }

  /**
   * Records an entry answered for (parent, name) and counts one kernel lookup.
   * Reuses the node with the same key unless it is unlinked or of another type (the key was
   * reused by a new object), or is a directory at or above `parent` (a directory cannot hold
   * itself: the answer is older than the key's reuse, or a bind mount shows it again, and the
   * kernel refuses such a link); otherwise allocates a fresh node id. A directory above keeps
   * the key.
   */
  enter(parent: NodeImpl, name: string, key: string, ino: bigint, mode: number): NodeImpl {
    const type = mode & S_IFMT;
    let node = this.#byKey.get(key);
    const above = node !== undefined && this.#above(node, parent, name);
    if (
      node && node !== this.root &&
      (node.linkParent === undefined || (type && node.type !== type) || above)
    ) {
      node = undefined;
    }
    if (!node) {
      const id = this.#nextId++;
      node = new NodeImpl(BigInt(id), key, ino, type);
      this.#byId.set(id, node);
      if (!above) this.#byKey.set(key, node);
    } else {
      node.ino = ino;
      if (type) node.type = type;
    }
    if (node !== this.root) {
      const previous = parent.children?.get(name);
      if (previous && previous !== node) this.#removeLink(previous, parent, name);
      this.#addLink(node, parent, name);
    }
    node.lookups++;
    return node;
  }

  /** Whether directory `node`, not yet named (parent, name), is `parent` or above it. */
  #above(node: NodeImpl, parent: NodeImpl, name: string): boolean {
    if (node.type !== S_IFDIR || parent.children?.get(name) === node) return false;
    let n: NodeImpl | undefined = parent;
    for (let depth = 0; n !== undefined && depth < MAX_DEPTH; depth++) {
      if (n === node) return true;
      n = n.linkParent;
    }
    return false;
  }

  /** FORGET: drops `count` lookups; returns the node if it was removed from the table. */
  forget(nodeId: bigint, count: number): NodeImpl | undefined {
    const node = this.#byId.get(Number(nodeId));
    if (!node || node === this.root) return undefined;
    node.lookups -= count;
    if (node.lookups > 0) return undefined;
    this.#byId.delete(Number(nodeId));
    if (this.#byKey.get(node.key) === node) this.#byKey.delete(node.key);
    for (const link of node.links()) {
      if (link.parent.children?.get(link.name) === node) link.parent.children.delete(link.name);
    }
    // Links are kept: an implementation still holding the node can read its last path.
    return node;
  }

  /** unlink/rmdir succeeded for (parent, name). */
  removeName(parent: NodeImpl, name: string): void {
    const node = parent.children?.get(name);
    if (node) this.#removeLink(node, parent, name);
  }

  /** rename succeeded; `exchange` swaps the two names. */
  rename(
    parent: NodeImpl,
    name: string,
    newParent: NodeImpl,
    newName: string,
    exchange: boolean,
  ): void {
    const moved = parent.children?.get(name);
    const target = newParent.children?.get(newName);
    if (moved) this.#removeLink(moved, parent, name);
    if (target) this.#removeLink(target, newParent, newName);
    if (moved) this.#addLink(moved, newParent, newName);
    if (exchange && target) this.#addLink(target, parent, name);
  }

  #addLink(node: NodeImpl, parent: NodeImpl, name: string): void {
    (parent.children ??= new Map()).set(name, node);
    const current = node.linkParent;
    const currentName = node.linkName;
    if (current === parent && currentName === name) return;
    node.linkParent = parent;
    node.linkName = name;
    if (current === undefined) return;
    // The name it had becomes its newest older name; (parent, name) leaves the older ones.
    const older: Link[] = [{ parent: current, name: currentName }];
    for (const link of node.olderLinks ?? []) {
      if (link.parent !== parent || link.name !== name) older.push(link);
    }
    if (older.length > MAX_LINKS - 1) {
      const dropped = older.pop()!;
      if (dropped.parent.children?.get(dropped.name) === node) {
        dropped.parent.children.delete(dropped.name);
      }
    }
    node.olderLinks = older;
  }

  #removeLink(node: NodeImpl, parent: NodeImpl, name: string): void {
    if (node.linkParent === parent && node.linkName === name) {
      const next = node.olderLinks?.shift();
      node.linkParent = next?.parent;
      node.linkName = next?.name ?? "";
      if (node.olderLinks?.length === 0) node.olderLinks = undefined;
    } else if (node.olderLinks !== undefined) {
      const i = node.olderLinks.findIndex((l) => l.parent === parent && l.name === name);
      if (i >= 0) node.olderLinks.splice(i, 1);
      if (node.olderLinks.length === 0) node.olderLinks = undefined;
    }
    if (parent.children?.get(name) === node) parent.children.delete(name);
  }
}
