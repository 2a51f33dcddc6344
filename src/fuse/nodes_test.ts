import { equal, notEqual } from "node:assert/strict";
import { S_IFDIR, S_IFREG } from "../linux/mod.ts";
import { NodeTable } from "./nodes.ts";

const DIR = S_IFDIR | 0o755;
const FILE = S_IFREG | 0o644;

Deno.test("NodeTable: the same key under a second name is the same node (hard links)", () => {
  const t = new NodeTable();
  const a = t.enter(t.root, "a", "1:10", 10n, FILE);
  const b = t.enter(t.root, "b", "1:10", 10n, FILE);
  equal(b, a);
  equal(a.lookups, 2);
});

Deno.test("NodeTable: a key of an unlinked node, or of another type, gets a fresh node", () => {
  const t = new NodeTable();
  const a = t.enter(t.root, "a", "1:10", 10n, FILE);
  t.removeName(t.root, "a");
  const b = t.enter(t.root, "b", "1:10", 10n, FILE);
  notEqual(b.nodeId, a.nodeId);
  const c = t.enter(t.root, "c", "1:10", 10n, DIR);
  notEqual(c.nodeId, b.nodeId);
});

Deno.test("NodeTable: a directory answered with the key of itself or one above gets a fresh node", () => {
  const t = new NodeTable();
  const top = t.enter(t.root, "top", "1:20", 20n, DIR);
  const mid = t.enter(top, "mid", "1:21", 21n, DIR);
  // An answer older than the reuse of "1:20" (or a bind mount of top inside mid): linking
  // top's node under mid would make a cycle, which the kernel refuses ("would have caused loop").
  const inner = t.enter(mid, "inner", "1:20", 20n, DIR);
  notEqual(inner.nodeId, top.nodeId);
  equal(inner.path, "/top/mid/inner");
  equal(top.path, "/top", "the directory above keeps its place");
  equal(t.byKey("1:20"), top, "and its key");
  const self = t.enter(mid, "self", "1:21", 21n, DIR);
  notEqual(self.nodeId, mid.nodeId);
  equal(mid.path, "/top/mid");
  // Found again under the name it has: the same node.
  equal(t.enter(top, "mid", "1:21", 21n, DIR), mid);
  // A directory met elsewhere (renamed in the container) moves.
  const other = t.enter(t.root, "other", "1:22", 22n, DIR);
  equal(t.enter(top, "moved", "1:22", 22n, DIR), other);
  equal(other.path, "/top/moved");
});

Deno.test("NodeTable: a node's names: the newest is current, an unlinked one gives way to the next", () => {
  const t = new NodeTable();
  const a = t.enter(t.root, "a", "1:30", 30n, FILE);
  t.enter(t.root, "b", "1:30", 30n, FILE);
  equal(a.path, "/b");
  t.enter(t.root, "a", "1:30", 30n, FILE);
  equal(a.path, "/a", "named again: current again");
  t.removeName(t.root, "a");
  equal(a.path, "/b");
  t.rename(t.root, "b", t.root, "c", false);
  equal(a.path, "/c");
  equal(t.child(t.root, "b"), undefined);
  t.removeName(t.root, "c");
  equal(a.parent, undefined);
  equal(a.path, undefined);
  equal(t.child(t.root, "c"), undefined);
});

Deno.test("NodeTable: at most 16 names per node are kept, the oldest dropped from its directory", () => {
  const t = new NodeTable();
  const node = t.enter(t.root, "n0", "1:40", 40n, FILE);
  for (let i = 1; i < 20; i++) t.enter(t.root, `n${i}`, "1:40", 40n, FILE);
  equal(node.links().length, 16);
  equal(node.path, "/n19");
  for (let i = 0; i < 4; i++) equal(t.child(t.root, `n${i}`), undefined, `n${i} dropped`);
  for (let i = 4; i < 20; i++) equal(t.child(t.root, `n${i}`), node, `n${i} kept`);
  // Forgotten: no directory holds it any more.
  t.forget(node.nodeId, 20);
  for (let i = 4; i < 20; i++) equal(t.child(t.root, `n${i}`), undefined);
});
