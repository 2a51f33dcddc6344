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
