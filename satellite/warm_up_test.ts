// The satellite's warm-up: one listing per idle turn, as many as asked, stopping at a failure;
// and the listing it makes is the one a walk makes.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { AT_FDCWD, O_CLOEXEC, O_PATH } from "../src/linux/mod.ts";
import { type EntryList, RECORD_BYTES, recordMode } from "../src/protocol/mod.ts";
import { SatelliteFs } from "./fs.ts";
import { cString, Libc } from "./libc.ts";
import { NodeHandles } from "./nodes.ts";
import { warmUpWhenIdle } from "./warm_up.ts";

/** Idle turns the test runs by hand. */
function idleQueue(): { whenIdle(fn: () => void): void; turn(): boolean } {
  const tasks: (() => void)[] = [];
  return {
    whenIdle: (fn) => void tasks.push(fn),
    turn: () => {
      const task = tasks.shift();
      task?.();
      return task !== undefined;
    },
  };
}

const LISTING: EntryList = { names: ["a"], records: new Uint8Array(RECORD_BYTES) };

Deno.test("satellite warm-up: one listing per idle turn, as many as asked", () => {
  const idle = idleQueue();
  let listed = 0;
  let made: number | undefined;
  warmUpWhenIdle(
    { whenIdle: idle.whenIdle, listAt: () => (listed++, LISTING) },
    (n) => made = n,
    3,
  );
  equal(listed, 0, "nothing before the loop is idle");
  for (let turn = 1; turn <= 3; turn++) {
    ok(idle.turn());
    equal(listed, turn);
  }
  equal(made, undefined);
  ok(idle.turn()); // the turn that finds it done
  deepStrictEqual([listed, made], [3, 3]);
  equal(idle.turn(), false, "nothing left scheduled");
});

Deno.test("satellite warm-up: a listing that fails ends it", () => {
  const idle = idleQueue();
  let made: number | undefined;
  let calls = 0;
  warmUpWhenIdle(
    { whenIdle: idle.whenIdle, listAt: () => ++calls === 2 ? undefined : LISTING },
    (n) => made = n,
  );
  while (idle.turn()) { /* run it out */ }
  deepStrictEqual([calls, made], [2, 1]);
});

Deno.test("satellite warm-up: listAt lists a directory whole, with attributes, as a walk does", () => {
  const libc = new Libc();
  const dir = Deno.makeTempDirSync({ prefix: "dockerfuse-warm-" });
  try {
    for (const name of ["x", "y", "z"]) Deno.writeTextFileSync(`${dir}/${name}`, name);
    Deno.mkdirSync(`${dir}/sub`);
    const rootFd = libc.fn.openat(AT_FDCWD, cString("/")!, O_PATH | O_CLOEXEC, 0);
    ok(rootFd >= 0);
    const fs = new SatelliteFs(libc, rootFd, {
      procFd: "/proc/self/fd",
      nodes: new NodeHandles(100, (fd) => libc.fn.close(fd)),
    });
    const listing = fs.listAt(dir)!;
    const names = (listing.names as string[]).filter((n) => n !== "." && n !== "..");
    deepStrictEqual(names.sort(), ["sub", "x", "y", "z"]);
    equal(listing.records.length, listing.names.length * RECORD_BYTES);
    const view = new DataView(listing.records.buffer, listing.records.byteOffset);
    const modes = new Map(listing.names.map((n, i) => [n, recordMode(view, i * RECORD_BYTES)]));
    deepStrictEqual(
      ["sub", "x", "y", "z"].map((n) => (modes.get(n) ?? 0) & 0o170000),
      [0o040000, 0o100000, 0o100000, 0o100000],
    );
    equal(fs.listAt(`${dir}/missing`), undefined);
    equal(fs.listAt(`${dir}/x`), undefined); // not a directory
    ok(fs.listAt("/proc") !== undefined, "the warm-up's directory");
    libc.fn.close(rootFd);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
