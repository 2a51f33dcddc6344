import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { AT_FDCWD, O_CLOEXEC, O_RDONLY } from "../src/linux/mod.ts";
import { cString, Libc } from "./libc.ts";
import { Loop } from "./loop.ts";

Deno.test("Loop dispatches every readable descriptor, follows changes to its set, stops", () => {
  const libc = new Libc();
  // Regular files are always readable: every watched one is ready in every round.
  const open = (): number =>
    libc.fn.openat(AT_FDCWD, cString("/proc/self/status")!, O_RDONLY | O_CLOEXEC, 0);
  const a = open();
  const b = open();
  try {
    const calls: string[] = [];
    const loop = new Loop(libc);
    loop.add(a, () => {
      calls.push("a");
      if (calls.length === 1) loop.add(b, () => calls.push("b"));
      if (calls.filter((c) => c === "a").length === 3) loop.remove(b);
      if (calls.length >= 6) loop.stop();
    });
    strictEqual(loop.run(), undefined);
    // a alone (called directly), then a and b polled together, then b removed in the round
    // where a runs a third time, and a alone again until it stops the loop.
    deepStrictEqual(calls, ["a", "a", "b", "a", "a", "a"]);
  } finally {
    libc.fn.close(a);
    libc.fn.close(b);
  }
});

Deno.test("Loop.run returns at once with no sources", () => {
  strictEqual(new Loop(new Libc()).run(), undefined);
});
