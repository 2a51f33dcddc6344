// Copyright 2026 the dockerfuse authors. MIT license.
// The warm-up script: what it asks of a filesystem, that it forgets what it entered, and that it
// ends where it is told to.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { S_IFDIR, S_IFREG } from "../linux/mod.ts";
import { ENOENT, type Errno } from "./errno.ts";
import type { Attr, DirEntry, Entry, FileSystem, Node } from "./filesystem.ts";
import { warmUp } from "./warm_up.ts";

/** A tree by path: directories hold names; files are leaves. */
interface TreeDir {
  readonly ino: bigint;
  readonly children: Map<string, TreeDir | bigint>;
}

function attr(ino: bigint, dir: boolean): Attr {
  const t = { sec: 1, nsec: 0 };
  return {
    ino,
    mode: dir ? S_IFDIR | 0o755 : S_IFREG | 0o644,
    nlink: 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    size: 0,
    blocks: 0,
    atime: t,
    mtime: t,
    ctime: t,
  };
}

/** A read-only tree filesystem recording what it is asked. */
class TreeFs implements FileSystem<TreeDir> {
  readonly opened: string[] = [];
  readonly looked: string[] = [];
  forgotten = 0;
  getattrs = 0;
  released = 0;
  readonly #byIno = new Map<bigint, TreeDir>();
  readonly #root: TreeDir;
  #nextIno = 2n;

  constructor(shape: Record<string, unknown>) {
    this.#root = this.#build(shape, 1n);
  }

  #build(shape: Record<string, unknown>, ino: bigint): TreeDir {
    const dir: TreeDir = { ino, children: new Map() };
    this.#byIno.set(ino, dir);
    for (const [name, sub] of Object.entries(shape)) {
      const child = this.#nextIno++;
      dir.children.set(
        name,
        typeof sub === "object" ? this.#build(sub as Record<string, unknown>, child) : child,
      );
    }
    return dir;
  }

  #entry(child: TreeDir | bigint): Entry {
    return typeof child === "bigint"
      ? { attr: attr(child, false) }
      : { attr: attr(child.ino, true) };
  }

  lookup(_ctx: unknown, parent: Node, name: string): Entry | Errno {
    this.looked.push(name);
    const child = this.#byIno.get(parent.ino)?.children.get(name);
    return child === undefined ? ENOENT : this.#entry(child);
  }

  forget(): void {
    this.forgotten++;
  }

  getattr(_ctx: unknown, node: Node): { attr: Attr } {
    this.getattrs++;
    return { attr: attr(node.ino, this.#byIno.has(node.ino)) };
  }

  opendir(_ctx: unknown, node: Node): { handle: TreeDir } | Errno {
    const dir = node.ino === 1n ? this.#root : this.#byIno.get(node.ino);
    if (dir === undefined) return ENOENT;
    this.opened.push(node.path ?? "?");
    return { handle: dir };
  }

  readdir(_ctx: unknown, _node: Node, dir: TreeDir, offset: number, plus: boolean): DirEntry[] {
    const out: DirEntry[] = [];
    let i = 0;
    for (const [name, child] of dir.children) {
      i++;
      if (i <= offset) continue;
      const entry = this.#entry(child);
      out.push({
        name,
        ino: entry.attr.ino,
        mode: entry.attr.mode,
        next: i,
        entry: plus ? entry : undefined,
      });
    }
    return out;
  }

  releasedir(): void {
    this.released++;
  }
}

function files(n: number): Record<string, true> {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [`f${i}`, true]));
}

Deno.test("warm-up: lists every directory below the name depth first, then forgets every node", async () => {
  const fs = new TreeFs({
    top: {
      a: { ...files(300), sub: files(5) },
      b: { ...files(50), sub: files(5) },
    },
    other: files(3),
  });
  const stats = await warmUp(fs, "top");
  deepStrictEqual(fs.opened, ["/top", "/top/a", "/top/a/sub", "/top/b", "/top/b/sub"]);
  deepStrictEqual(stats.dirs, 5);
  equal(stats.entries, 2 + 301 + 5 + 51 + 5);
  equal(fs.released, 5);
  equal(fs.getattrs, 5); // one per listed directory with entries
  // LOOKUP of the name, then one of each directory's first entry.
  deepStrictEqual(fs.looked, ["top", "a", "f0", "f0", "f0", "f0"]);
  // Every node entered (the top, and each listed entry) is forgotten.
  equal(fs.forgotten, 1 + 2 + 301 + 5 + 51 + 5);
  ok(stats.requests > 10);
});

Deno.test("warm-up: ends at the next request once told to stop", async () => {
  const fs = new TreeFs({ top: { a: files(10), b: files(10), c: files(10) } });
  let asked = 0;
  const stats = await warmUp(fs, "top", {}, { stop: () => ++asked > 4 });
  ok(stats.dirs < 4, `listed ${stats.dirs}`);
  ok(stats.requests <= 4, `${stats.requests} requests`);
});

Deno.test("warm-up: a name that is not there ends it at once", async () => {
  const fs = new TreeFs({ top: files(3) });
  const stats = await warmUp(fs, "missing");
  deepStrictEqual([stats.dirs, stats.entries], [0, 0]);
  deepStrictEqual(fs.opened, []);
});
