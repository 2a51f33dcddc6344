import { deepStrictEqual, throws } from "node:assert/strict";
import { BoundedMap } from "./bounded_map.ts";

Deno.test("bounded map: keeps at most its limit, evicting the oldest", () => {
  const m = new BoundedMap<string, number>(2);
  m.set("a", 1).set("b", 2).set("c", 3);
  deepStrictEqual([...m.entries()], [["b", 2], ["c", 3]]);
});

Deno.test("bounded map: setting a key again makes it the newest", () => {
  const m = new BoundedMap<string, number>(2);
  m.set("a", 1).set("b", 2).set("a", 10).set("c", 3);
  deepStrictEqual([...m.entries()], [["a", 10], ["c", 3]]);
});

Deno.test("bounded map: refuses a limit below one", () => {
  throws(() => new BoundedMap(0), RangeError);
});

Deno.test("bounded map: evicts in order through re-sets, deletes and clears (against a model)", () => {
  // A seeded mix of operations; the model is a plain Map trimmed from its front.
  let seed = 7;
  const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (const limit of [1, 3, 50]) {
    const m = new BoundedMap<number, number>(limit);
    const model = new Map<number, number>();
    for (let i = 0; i < 20000; i++) {
      const key = rand(limit * 3);
      const op = rand(100);
      if (op < 70) {
        m.set(key, i);
        model.delete(key);
        model.set(key, i);
        if (model.size > limit) model.delete(model.keys().next().value!);
      } else if (op < 98) {
        m.delete(key);
        model.delete(key);
      } else {
        m.clear();
        model.clear();
      }
      if (i % 97 === 0) deepStrictEqual([...m.entries()], [...model.entries()], `step ${i}`);
    }
    deepStrictEqual([...m.entries()], [...model.entries()]);
  }
});
