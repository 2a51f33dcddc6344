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

Deno.test("Loop runs idle tasks once nothing is readable, never ahead of a ready handler", () => {
  const libc = new Libc();
  const fd = libc.fn.eventfd(0, O_CLOEXEC);
  try {
    const calls: string[] = [];
    const loop = new Loop(libc);
    const one = new BigUint64Array([1n]);
    const buf = new BigUint64Array(1);
    loop.add(fd, () => {
      libc.fn.read(fd, new Uint8Array(buf.buffer), 8n);
      calls.push(`read ${buf[0]}`);
      // Queued while a handler runs, and again while one is readable: both wait for idle.
      if (calls.length === 1) {
        loop.whenIdle(() => {
          calls.push("idle");
          loop.stop();
        });
        libc.fn.write(fd, new Uint8Array(one.buffer), 8n);
      }
    });
    loop.whenIdle(() => calls.push("first idle"));
    libc.fn.write(fd, new Uint8Array(one.buffer), 8n);
    strictEqual(loop.run(), undefined);
    deepStrictEqual(calls, ["read 1", "read 1", "first idle", "idle"]);
  } finally {
    libc.fn.close(fd);
  }
});
