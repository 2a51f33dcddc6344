import { deepStrictEqual } from "node:assert/strict";
import { fakeNode } from "./_fake_rpc.ts";
import { NodeHandles } from "./node_handles.ts";

function setup(): {
  nodes: NodeHandles;
  link: { generation: number };
  forgotten: [number, number[]][];
} {
  const forgotten: [number, number[]][] = [];
  const link = { generation: 1 };
  const nodes = new NodeHandles({
    get generation(): number {
      return link.generation;
    },
    forget: (gen, ids) => forgotten.push([gen, ids]),
  });
  return { nodes, link, forgotten };
}

const settled = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

Deno.test("node handles (client): a place is relative to the nearest handle, else the root", () => {
  const { nodes } = setup();
  const root = fakeNode("root");
  const a = fakeNode("k:a", root, "a");
  const b = fakeNode("k:b", a, "b");
  const c = fakeNode("k:c", b, "c");
  deepStrictEqual(nodes.where(c, "f"), { path: "a/b/c/f" });
  deepStrictEqual(nodes.where(root), { path: "" });
  nodes.issued("k:a", 5);
  deepStrictEqual(nodes.where(c, "f"), { at: 5, path: "b/c/f" });
  deepStrictEqual(nodes.where(a), { at: 5, path: "" });
  deepStrictEqual(nodes.where(c, "f", true), { path: "a/b/c/f" }, "from the root when asked");
  nodes.issued("k:c", 6);
  deepStrictEqual(nodes.where(c, "f"), { at: 6, path: "f" });
  deepStrictEqual(
    nodes.where(fakeNode("k:gone", undefined, "gone"), "f"),
    undefined,
    "unlinked, no handle",
  );
});

Deno.test("node handles (client): a second handle of a key, forgotten keys and stale ones go back in one batch", async () => {
  const { nodes, forgotten } = setup();
  nodes.issued("k:a", 5);
  nodes.issued("k:a", 6);
  nodes.issued("k:b", 7);
  nodes.issued("k:c", 8);
  nodes.forget("k:b");
  nodes.forget("k:none");
  nodes.stale(8);
  nodes.release(9);
  deepStrictEqual(forgotten, [], "not before the current task ends");
  await settled();
  deepStrictEqual(forgotten, [[1, [6, 7, 8, 9]]]);
  deepStrictEqual([nodes.has("k:a"), nodes.has("k:b"), nodes.has("k:c")], [true, false, false]);
});

Deno.test("node handles (client): handles of an earlier connection are dropped unsent", async () => {
  const { nodes, link, forgotten } = setup();
  const root = fakeNode("root");
  const a = fakeNode("k:a", root, "a");
  nodes.issued("k:a", 5);
  nodes.forget("k:x");
  link.generation = 2;
  deepStrictEqual(nodes.where(a, "f"), { path: "a/f" });
  nodes.forget("k:a");
  await settled();
  deepStrictEqual(forgotten, []);
  deepStrictEqual(nodes.size, 0);
});
