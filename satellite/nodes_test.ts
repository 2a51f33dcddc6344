import { deepStrictEqual } from "node:assert/strict";
import { MAX_NODE_BUDGET, nodeBudgetFor, NodeHandles } from "./nodes.ts";

Deno.test("node handles: past the budget none is issued and the descriptor is closed", () => {
  const closed: number[] = [];
  const nodes = new NodeHandles(2, (fd) => closed.push(fd), 0);
  deepStrictEqual([nodes.issue(100), nodes.issue(101)], [1, 2]);
  deepStrictEqual(nodes.available, false);
  deepStrictEqual(nodes.issue(102), undefined);
  deepStrictEqual(closed, [102]);
  deepStrictEqual([nodes.fd(1), nodes.fd(2), nodes.fd(3)], [100, 101, undefined]);
});

Deno.test("node handles: forget closes known handles, passes over unknown ones, frees budget", () => {
  const closed: number[] = [];
  const nodes = new NodeHandles(2, (fd) => closed.push(fd), 0);
  nodes.issue(10);
  nodes.issue(11);
  nodes.forget([2, 99, 2]);
  deepStrictEqual(closed, [11]);
  deepStrictEqual([nodes.size, nodes.fd(2)], [1, undefined]);
  deepStrictEqual(nodes.issue(12), 3, "ids are not reused at once");
  nodes.closeAll();
  deepStrictEqual(closed, [11, 10, 12]);
  deepStrictEqual(nodes.size, 0);
});

Deno.test("node handles: ids are the epoch times 2^21 plus a counter that wraps, never one held", () => {
  const epoch = 0xfffffffe;
  const nodes = new NodeHandles(4, () => {}, epoch);
  const first = nodes.issue(1)!;
  deepStrictEqual([first, Number.isSafeInteger(first)], [epoch * 2 ** 21 + 1, true]);
  for (let i = 2; i < 2 ** 21; i++) nodes.forget([nodes.issue(i)!]);
  deepStrictEqual(nodes.issue(5), epoch * 2 ** 21, "wrapped to 0");
  deepStrictEqual(nodes.issue(6), epoch * 2 ** 21 + 2, "1 is still held");
});

Deno.test("node handles: the epoch is random unless given", () => {
  const firsts = new Set<number | undefined>();
  for (let i = 0; i < 8; i++) firsts.add(new NodeHandles(1, () => {}).issue(3));
  deepStrictEqual(firsts.size > 1, true);
});

Deno.test("node handles: the budget follows the descriptor limit", () => {
  deepStrictEqual(nodeBudgetFor(1024), 512);
  deepStrictEqual(nodeBudgetFor(4096), 2048);
  deepStrictEqual(nodeBudgetFor(1 << 20), MAX_NODE_BUDGET);
  deepStrictEqual(nodeBudgetFor(Infinity), MAX_NODE_BUDGET);
  deepStrictEqual(nodeBudgetFor(0), 0);
});

Deno.test("node handles: an inode answered again keeps its handle until every answer is given back", () => {
  const closed: number[] = [];
  const nodes = new NodeHandles(5, (fd) => closed.push(fd), 0);
  deepStrictEqual(nodes.issue(10, "0:1:7"), 1);
  deepStrictEqual(nodes.again("0:1:7"), 1);
  deepStrictEqual(nodes.issue(11, "0:1:7"), 1, "a second descriptor of it is closed");
  deepStrictEqual([closed, nodes.size], [[11], 1]);
  nodes.forget([1, 1]);
  deepStrictEqual(nodes.fd(1), 10, "one answer is still out");
  nodes.forget([1]);
  deepStrictEqual([closed, nodes.fd(1), nodes.again("0:1:7")], [[11, 10], undefined, undefined]);
  deepStrictEqual(nodes.issue(12, "0:1:7"), 2, "a new handle once it was closed");
});
