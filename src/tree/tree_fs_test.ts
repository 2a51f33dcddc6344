import { S_IFDIR, S_IFREG } from "../linux/mod.ts";
import { deepStrictEqual, equal, notEqual, ok } from "node:assert/strict";
import {
  type AttrResult,
  EIO,
  ENOENT,
  ENOSYS,
  type Entry,
  EROFS,
  EXDEV,
  type FileSystem,
  type Node,
  type Opened,
  type RequestContext,
} from "../fuse/mod.ts";
import type { Attachment } from "./attach.ts";
import type { Target } from "./layout.ts";
import { type ContainerItem, type ImageItem, TreeFs, type TreeHandle } from "./tree_fs.ts";

/** A node as the FUSE layer keeps it: (parent, name) chain and a key. */
class FakeNode implements Node {
  static #next = 2n;
  readonly nodeId: bigint;
  data: unknown = undefined;
  constructor(
    readonly key: string,
    readonly parent: FakeNode | undefined,
    readonly name: string,
    readonly ino = 0n,
  ) {
    this.nodeId = key === "" ? 1n : FakeNode.#next++;
  }
  get path(): string | undefined {
    if (this.parent === undefined) return this.key === "" ? "/" : undefined;
    const up = this.parent.path;
    return up === undefined ? undefined : `${up === "/" ? "" : up}/${this.name}`;
  }
}

const ctx: RequestContext = {
  uid: 0,
  gid: 0,
  pid: 1,
  unique: 1n,
  opcode: 0,
  signal: new AbortController().signal,
};

const time = { sec: 0, nsec: 0 };
function fileAttr(ino: bigint, mode = S_IFREG | 0o644) {
  return {
    ino,
    mode,
    nlink: 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    size: 3,
    blocks: 0,
    atime: time,
    mtime: time,
    ctime: time,
  };
}

/** An inner filesystem recording the paths and keys it was asked about. */
class InnerFs implements FileSystem<number> {
  readonly calls: string[] = [];
  constructor(readonly label: string) {}
  lookup(_ctx: RequestContext, parent: Node, name: string): Entry {
    this.calls.push(`lookup ${parent.path} ${parent.key} ${name}`);
    return { attr: fileAttr(7n), key: `0:1:7` };
  }
  getattr(_ctx: RequestContext, node: Node): AttrResult {
    this.calls.push(`getattr ${node.path} ${node.key}`);
    return { attr: fileAttr(7n) };
  }
  open(_ctx: RequestContext, node: Node, _flags: number): Opened<number> {
    this.calls.push(`open ${node.path}`);
    return { handle: 42 };
  }
  read(_ctx: RequestContext, node: Node, handle: number): Uint8Array {
    this.calls.push(`read ${node.path} ${handle}`);
    return new TextEncoder().encode(this.label);
  }
  release(_ctx: RequestContext, _node: Node, handle: number): void {
    this.calls.push(`release ${handle}`);
  }
  unlink(_ctx: RequestContext, parent: Node, name: string): void {
    this.calls.push(`unlink ${parent.path} ${name}`);
  }
  rename(_ctx: RequestContext, parent: Node, name: string, to: Node, toName: string): void {
    this.calls.push(`rename ${parent.path} ${name} ${to.path} ${toName}`);
  }
  mkdir(_ctx: RequestContext, parent: Node, name: string): Entry {
    this.calls.push(`mkdir ${parent.path} ${name}`);
    return { attr: fileAttr(8n, S_IFDIR | 0o755) };
  }
}

function setup(failOpen = false) {
  let containers: ContainerItem[] = [
    { id: "aaa", name: "web", running: true, created: 1 },
    { id: "bbb", name: "db", running: true, created: 2 },
    { id: "ccc", name: "old", running: false, created: 3 },
  ];
  let images: ImageItem[] = [{ id: "sha256:i1", tags: ["org/app:1", "alpine:3"], created: 4 }];
  const opened: string[] = [];
  const closed: string[] = [];
  const inners = new Map<string, InnerFs>();
  const invalidated: string[] = [];
  const listed = { containers: 0, images: 0 };
  let clock = 0;
  const tree = new TreeFs({
    listContainers: () => (listed.containers++, Promise.resolve(containers)),
    listImages: () => (listed.images++, Promise.resolve(images)),
    listVolumes: () => Promise.resolve([]),
    open(target: Target): Promise<Attachment<FileSystem>> {
      const label = target.kind === "container"
        ? target.name
        : target.kind === "image"
        ? target.ref
        : target.name;
      opened.push(label);
      if (failOpen) return Promise.reject(new Error("no satellite for this architecture"));
      const fs = new InnerFs(label);
      inners.set(label, fs);
      return Promise.resolve({
        fs: fs as FileSystem,
        ended: new Promise(() => {}),
        close: () => (closed.push(label), Promise.resolve()),
      });
    },
  }, {
    sections: ["containers", "images"],
    idleMs: 60_000,
    maxAttached: 2,
    treeTimeout: 0.5,
    listTtlMs: 60_000,
    logger: { debug() {}, info() {}, warn() {}, error() {} },
    schedule: () => () => {},
    now: () => clock,
  });
  tree.setInvalidator({
    invalidateEntry: (
      parent,
      name,
    ) => (invalidated.push(`${parent.key}/${name}`), Promise.resolve(true)),
    invalidateInode: () => Promise.resolve(true),
  });
  const root = new FakeNode("", undefined, "");
  /** Looks `name` up in `parent` and makes the node the layer would. */
  const walk = async (parent: FakeNode, name: string): Promise<FakeNode> => {
    const e = await tree.lookup(ctx, parent, name);
    if (!("attr" in e)) throw new Error(`lookup ${name}: ${e}`);
    return new FakeNode(e.key!, parent, name, e.attr.ino);
  };
  return {
    tree,
    root,
    walk,
    opened,
    closed,
    inners,
    invalidated,
    listed,
    setContainers: (c: ContainerItem[]) => containers = c,
    advance: (ms: number) => clock += ms,
    setImages: (i: ImageItem[]) => images = i,
  };
}

async function names(tree: TreeFs, node: Node): Promise<string[]> {
  const opened = await tree.opendir(ctx, node, 0);
  if (!("handle" in opened)) throw new Error(String(opened));
  const entries = await tree.readdir(ctx, node, opened.handle, 0, false);
  if (!Array.isArray(entries)) throw new Error(String(entries));
  return entries.map((e) => e.name).filter((n) => n !== "." && n !== "..");
}

Deno.test("tree: listing and stat-ing containers attaches nothing", async () => {
  const t = setup();
  deepStrictEqual(await names(t.tree, t.root), ["containers", "images"]);
  const containers = await t.walk(t.root, "containers");
  deepStrictEqual(await names(t.tree, containers), ["web", "db", "old"]);
  const web = await t.walk(containers, "web");
  const attr = await t.tree.getattr(ctx, web, undefined);
  ok("attr" in attr && attr.attr.mode === (S_IFDIR | 0o755));
  const old = await t.walk(containers, "old");
  const oldAttr = await t.tree.getattr(ctx, old, undefined);
  ok("attr" in oldAttr && oldAttr.attr.mode === (S_IFDIR | 0o555), "stopped: read-only");
  deepStrictEqual(t.opened, []);
});

Deno.test("tree: below a container the inner filesystem sees paths and keys from its root", async () => {
  const t = setup();
  const web = await t.walk(await t.walk(t.root, "containers"), "web");
  const etc = await t.walk(web, "etc");
  equal(etc.key, "c:aaa|0:1:7", "keys are prefixed by the target's");
  const hosts = await t.walk(etc, "hosts");
  const opened = await t.tree.open(ctx, hosts, 0);
  ok("handle" in opened);
  const data = await t.tree.read(ctx, hosts, opened.handle, 0, 10);
  equal(new TextDecoder().decode(data as Uint8Array), "web");
  await t.tree.release(ctx, hosts, opened.handle, { flags: 0, releaseFlags: 0, lockOwner: 0n });
  deepStrictEqual(t.opened, ["web"]);
  deepStrictEqual(t.inners.get("web")!.calls, [
    "lookup / root etc",
    "lookup /etc 0:1:7 hosts",
    "open /etc/hosts",
    "read /etc/hosts 42",
    "release 42",
  ]);
});

Deno.test("tree: operations answering nothing succeed; a missing one is ENOSYS", async () => {
  const t = setup();
  const web = await t.walk(await t.walk(t.root, "containers"), "web");
  const tmp = await t.walk(web, "tmp");
  equal(await t.tree.unlink(ctx, tmp, "f"), undefined);
  equal(await t.tree.rename(ctx, tmp, "a", web, "b", 0), undefined);
  equal(await t.tree.rmdir(ctx, tmp, "d"), ENOSYS, "InnerFs has no rmdir");
  deepStrictEqual(t.inners.get("web")!.calls.slice(-2), ["unlink /tmp f", "rename /tmp a / b"]);
});

Deno.test("tree: a failed attach answers EIO and is retried only after a pause", async () => {
  const t = setup(true);
  const web = await t.walk(await t.walk(t.root, "containers"), "web");
  equal(await t.tree.lookup(ctx, web, "etc"), EIO);
  equal(await t.tree.lookup(ctx, web, "usr"), EIO);
  deepStrictEqual(t.opened, ["web"], "one attempt for both lookups");
  t.advance(60_000);
  equal(await t.tree.lookup(ctx, web, "etc"), EIO);
  deepStrictEqual(t.opened, ["web", "web"]);
});

Deno.test("tree: images nest by repository, are read-only, and keep tags apart", async () => {
  const t = setup();
  const images = await t.walk(t.root, "images");
  deepStrictEqual(await names(t.tree, images), ["org", "alpine:3"]);
  const org = await t.walk(images, "org");
  const app = await t.walk(org, "app:1");
  const alpine = await t.walk(images, "alpine:3");
  notEqual(app.key, alpine.key, "one image, two tags: two directories");
  equal(await t.tree.mkdir(ctx, app, "x", 0o755, 0), EROFS);
  const file = await t.walk(app, "f");
  equal(await t.tree.open(ctx, file, 1 /* O_WRONLY */), EROFS);
  const read = await t.tree.open(ctx, file, 0);
  ok("handle" in read);
  deepStrictEqual(t.opened, ["org/app:1"], "EROFS answered without attaching");
});

Deno.test("tree: a stopped container is served read-only", async () => {
  const t = setup();
  const old = await t.walk(await t.walk(t.root, "containers"), "old");
  equal(await t.tree.mkdir(ctx, old, "x", 0o755, 0), EROFS);
  deepStrictEqual(t.opened, [], "EROFS answered without a snapshot");
  const etc = await t.walk(old, "etc");
  equal(etc.key, "s:ccc|0:1:7");
  deepStrictEqual(t.opened, ["old"]);
});

Deno.test("tree: the tree's own directories are read-only", async () => {
  const t = setup();
  const containers = await t.walk(t.root, "containers");
  const web = await t.walk(containers, "web");
  equal(await t.tree.mkdir(ctx, t.root, "x", 0o755, 0), EROFS);
  equal(await t.tree.mkdir(ctx, containers, "x", 0o755, 0), EROFS);
  equal(await t.tree.rmdir(ctx, containers, "web"), EROFS);
  equal(await t.tree.setattr(ctx, web, { mode: 0o700 }, undefined), EROFS);
  const db = await t.walk(containers, "db");
  equal(await t.tree.rename(ctx, web, "a", db, "a", 0), EXDEV);
  deepStrictEqual(t.opened, []);
});

Deno.test("tree: a container that went away: ENOENT for lookups, EIO for open files", async () => {
  const t = setup();
  const containers = await t.walk(t.root, "containers");
  const web = await t.walk(containers, "web");
  const file = await t.walk(web, "f");
  const opened = await t.tree.open(ctx, file, 0);
  ok("handle" in opened);
  t.setContainers([{ id: "bbb", name: "db", running: true, created: 2 }]);
  await t.tree.refresh("containers");
  ok(t.invalidated.includes("t:/containers/old"), "the stopped one went too");
  ok(t.invalidated.includes("t:/containers/web"), t.invalidated.join());
  deepStrictEqual(t.closed, ["web"]);
  equal(await t.tree.lookup(ctx, containers, "web"), ENOENT);
  equal(await t.tree.lookup(ctx, web, "g"), ENOENT);
  equal(await t.tree.read(ctx, file, opened.handle as TreeHandle, 0, 1), EIO);
  deepStrictEqual(await names(t.tree, containers), ["db"]);
});

Deno.test("tree: a new container is listed after a refresh and its name invalidated", async () => {
  const t = setup();
  const containers = await t.walk(t.root, "containers");
  equal(await t.tree.lookup(ctx, containers, "new"), ENOENT);
  const before = t.listed.containers;
  equal(await t.tree.lookup(ctx, containers, "new"), ENOENT);
  equal(t.listed.containers, before, "a fresh listing is not asked again");
  t.setContainers([
    { id: "aaa", name: "web", running: true, created: 1 },
    { id: "ddd", name: "new", running: true, created: 5 },
  ]);
  await t.tree.refresh("containers");
  ok(t.invalidated.includes("t:/containers/new"));
  const fresh = await t.walk(containers, "new");
  equal(fresh.key, "c:ddd");
});

Deno.test("tree: at most maxAttached targets while many are touched", async () => {
  const t = setup();
  const many: ContainerItem[] = [];
  for (let i = 0; i < 6; i++) many.push({ id: `id${i}`, name: `c${i}`, running: true, created: i });
  t.setContainers(many);
  const containers = await t.walk(t.root, "containers");
  for (let i = 0; i < 6; i++) {
    const dir = await t.walk(containers, `c${i}`);
    await t.walk(dir, "etc");
  }
  equal(t.opened.length, 6);
  equal(t.tree.attachments.peak, 2);
  deepStrictEqual(t.closed, ["c0", "c1", "c2", "c3"]);
  await t.tree.close();
  equal(t.closed.length, 6);
});
