// The live view against a fake kernel: timeouts where the feed vouches, invalidations per
// change, overflow, forget and reset.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type { Node } from "../fuse/mod.ts";
import { ChangeKind } from "../protocol/mod.ts";
import { type KernelCaches, LiveView } from "./live.ts";

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function node(nodeId: number, key: string, parent?: Node, name = ""): Node {
  return {
    nodeId: BigInt(nodeId),
    key,
    ino: 0n,
    parent,
    name,
    path: parent === undefined ? "/" : `${parent.path === "/" ? "" : parent.path}/${name}`,
    data: undefined,
  };
}

function setup(longTimeout = 60) {
  const root = node(1, "");
  const d = node(2, "0:9:20", root, "d");
  const f = node(3, "0:9:30", d, "f");
  const nodes = [d, f];
  const calls: string[] = [];
  const kernel: KernelCaches = {
    invalidateEntry: (p, name) => (calls.push(`entry ${p.path} ${name}`), Promise.resolve(true)),
    invalidateInode: (n, offset = 0, _length, xattrsKept) => (
      calls.push(`inode ${n.path} ${offset}${xattrsKept ? " xattrs kept" : ""}`),
        Promise.resolve(true)
    ),
    nodeOf: (key) => key === "" ? root : nodes.find((n) => n.key === key),
    childOf: (p, name) => nodes.find((n) => n.parent === p && n.name === name),
    knownNodes: () => nodes,
    storeData: () => Promise.resolve(true),
  };
  const dropped: string[] = [];
  const unwatched: string[][] = [];
  const live = new LiveView({
    longTimeout,
    entryTimeout: 1,
    attrTimeout: 2,
    unwatch: (dirs) => unwatched.push(dirs),
    local: {
      dropped: (dir, name, child, what) =>
        dropped.push(`${dir}|${name ?? ""}|${child?.key ?? ""}|${what ?? "?"}`),
      droppedAll: () => dropped.push("all"),
    },
    logger: quiet,
  });
  live.attach(kernel);
  return { live, root, d, f, calls, dropped, unwatched };
}

const watched = (dir: string) =>
  dir === "0:9:10"
    ? { dir, what: ChangeKind.WATCHED, name: "" }
    : { dir, what: ChangeKind.WATCHED };

Deno.test("live: long timeouts only where the feed vouches", () => {
  const { live, root, d } = setup();
  const since = live.seq;
  // Nothing watched yet: the mount's timeouts.
  deepStrictEqual(live.entry(root, "0:9:20", true, "0:9:", since), { entry: 1, attr: 2 });
  live.onChanges([watched("0:9:10")]);
  // A file in the watched root: long; a directory only once watched itself.
  deepStrictEqual(live.entry(root, "0:9:40", false, "0:9:", since), { entry: 60, attr: 60 });
  deepStrictEqual(live.entry(root, "0:9:20", true, "0:9:", since), { entry: 60, attr: 2 });
  live.onChanges([watched("0:9:20")]);
  deepStrictEqual(live.entry(root, "0:9:20", true, "0:9:", since), { entry: 60, attr: 60 });
  // A file of another device (a bind-mounted file) sends its events elsewhere.
  deepStrictEqual(live.entry(root, "0:5:40", false, "0:5:", since), { entry: 60, attr: 2 });
  equal(live.attr(d, true, "0:9:", since), 60);
  ok(live.listingCached(d, since));
});

Deno.test("live: an answer read before an event of its directory is not cached", () => {
  const { live, root, d } = setup();
  live.onChanges([watched("0:9:10"), watched("0:9:20")]);
  const since = live.seq;
  live.onChanges([{ dir: "0:9:20", name: "x", what: ChangeKind.NAME }]);
  deepStrictEqual(live.entry(d, "0:9:50", false, "0:9:", since), { entry: 0, attr: 0 });
  equal(live.attr(d, true, "0:9:", since), 0);
  ok(!live.listingCached(d, since));
  // Other directories are not concerned; later answers are vouched for again.
  deepStrictEqual(live.entry(root, "0:9:60", false, "0:9:", since), { entry: 60, attr: 60 });
  deepStrictEqual(live.entry(d, "0:9:50", false, "0:9:", live.seq), { entry: 60, attr: 60 });
});

Deno.test("live: each change drops what the kernel and the client cache of it", () => {
  const { live, calls, dropped } = setup();
  live.onChanges([
    watched("0:9:10"),
    { dir: "0:9:20", name: "f", what: ChangeKind.DATA },
    { dir: "0:9:20", name: "f", what: ChangeKind.ATTR },
    { dir: "0:9:20", name: "f", what: ChangeKind.DATA | ChangeKind.ATTR },
    { dir: "0:9:20", name: "new", what: ChangeKind.NAME },
    { dir: "0:9:10", what: ChangeKind.SELF },
    { dir: "0:9:20", name: "a/b", what: ChangeKind.NAME }, // never a name: ignored
  ]);
  // A change of contents alone cannot have brought an xattr: the reader's answers stay.
  deepStrictEqual(calls, [
    "inode /d/f 0 xattrs kept",
    "inode /d/f -1",
    "inode /d/f 0",
    "entry /d new",
    "inode /d 0",
    "inode / 0",
  ]);
  // With the event's kind: a change of contents alone leaves what is known of xattrs.
  deepStrictEqual(dropped, [
    `0:9:20|f|0:9:30|${ChangeKind.DATA}`,
    `0:9:20|f|0:9:30|${ChangeKind.ATTR}`,
    `0:9:20|f|0:9:30|${ChangeKind.DATA | ChangeKind.ATTR}`,
    `0:9:20|new||${ChangeKind.NAME}`,
    `|||${ChangeKind.SELF}`,
  ]);
});

Deno.test("live: an overflow drops everything and vouches for nothing in flight", () => {
  const { live, root, calls, dropped } = setup();
  live.onChanges([watched("0:9:10")]);
  const since = live.seq;
  live.onChanges([{ dir: "", what: ChangeKind.OVERFLOW }]);
  deepStrictEqual(dropped, ["all"]);
  deepStrictEqual(calls, ["inode / 0", "entry / d", "inode /d 0", "entry /d f", "inode /d/f 0"]);
  deepStrictEqual(live.entry(root, "0:9:40", false, "0:9:", since), { entry: 0, attr: 0 });
  // The watches themselves survive an overflow: later answers are vouched for.
  deepStrictEqual(live.entry(root, "0:9:40", false, "0:9:", live.seq), { entry: 60, attr: 60 });
});

Deno.test("live: a forgotten directory is unwatched; vouched for until the satellite says", async () => {
  const { live, root, d } = setup();
  live.onChanges([watched("0:9:10"), watched("0:9:20")]);
  live.forget(d);
  await Promise.resolve();
  equal(live.watched, 2);
  live.onChanges([{ dir: "0:9:20", what: ChangeKind.UNWATCHED }]);
  equal(live.watched, 1);
  deepStrictEqual(live.entry(root, "0:9:20", true, "0:9:", live.seq), { entry: 60, attr: 2 });
});

Deno.test("live: forget sends one unwatch per turn; reset drops every watch", async () => {
  const s = setup();
  s.live.onChanges([watched("0:9:10"), watched("0:9:20"), watched("0:9:30")]);
  s.live.forget(s.d);
  s.live.forget(s.f);
  s.live.forget(s.root); // the root is never unwatched
  await Promise.resolve();
  deepStrictEqual(s.unwatched, [["0:9:20", "0:9:30"]]);
  s.live.reset();
  equal(s.live.watched, 0);
  deepStrictEqual(s.live.entry(s.root, "0:9:40", false, "0:9:", s.live.seq), {
    entry: 1,
    attr: 2,
  });
});

Deno.test("live: with a long timeout of 0 the mount's timeouts apply everywhere", () => {
  const { live, root, f } = setup(0);
  live.onChanges([watched("0:9:10"), watched("0:9:20")]);
  deepStrictEqual(live.entry(root, "0:9:40", false, "0:9:", live.seq), { entry: 1, attr: 2 });
  ok(!live.fileVouched(f));
});

Deno.test("live: a name found absent in a watched directory is cached until something could change that", () => {
  const { live, root, d, calls } = setup();
  const since = live.seq;
  equal(live.negative(d, "x", since), undefined, "not watched: the mount's negative timeout");
  live.onChanges([watched("0:9:10"), watched("0:9:20")]);
  equal(live.negative(d, "x", since), 60);
  equal(live.negative(d, "y", since), 60);
  equal(live.negative(root, "r", since), 60);
  // An event of the directory after the answer was asked: that answer may predate it.
  live.onChanges([{ dir: "0:9:20", name: "z", what: ChangeKind.NAME }]);
  equal(live.negative(d, "w", since), undefined);
  // The event naming a name drops its negative entry (as any entry) and its noting.
  calls.length = 0;
  live.onChanges([{ dir: "0:9:20", name: "x", what: ChangeKind.NAME }]);
  ok(calls.includes("entry /d x"), calls.join("; "));
  // A dropped watch drops the negative entries still noted there: the kernel would keep them.
  calls.length = 0;
  live.onChanges([{ dir: "0:9:20", what: ChangeKind.UNWATCHED }]);
  ok(calls.includes("entry /d y"), calls.join("; "));
  ok(!calls.includes("entry /d x"), "dropped already");
  equal(live.negative(d, "y", live.seq), undefined, "no longer vouched");
  // An overflow drops every one, the root's too.
  calls.length = 0;
  live.onChanges([{ dir: "", what: ChangeKind.OVERFLOW }]);
  ok(calls.includes("entry / r"), calls.join("; "));
});

Deno.test("live: a reconnect drops the negative entries the feed vouched for", () => {
  const { live, root, calls } = setup();
  live.onChanges([watched("0:9:10")]);
  equal(live.negative(root, "r", live.seq), 60);
  calls.length = 0;
  live.reset();
  ok(calls.includes("entry / r"), calls.join("; "));
  equal(live.negative(root, "r", live.seq), undefined);
});
