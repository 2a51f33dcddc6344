import { deepStrictEqual, ok } from "node:assert/strict";
import { S_IFDIR, S_IFLNK } from "../linux/mod.ts";
import { nameProblem, statKey, statProblem, statToAttr, targetProblem } from "./checks.ts";
import { fakeStat } from "./_fake_rpc.ts";

Deno.test("checks: names the kernel takes pass", () => {
  for (const name of ["a", ".hidden", "..x", "x".repeat(255), "é".repeat(127), "日本"]) {
    deepStrictEqual(nameProblem(name), undefined, name);
  }
});

Deno.test("checks: names the kernel refuses are caught", () => {
  for (const name of ["", "a/b", "/", "a\0b", "x".repeat(256), "é".repeat(128), "日".repeat(86)]) {
    ok(nameProblem(name) !== undefined, JSON.stringify(name));
  }
  ok(nameProblem(new Uint8Array([0xff])) !== undefined);
});

Deno.test("checks: stats with an unknown type, huge sizes or bad nanoseconds are caught", () => {
  deepStrictEqual(statProblem(fakeStat()), undefined);
  deepStrictEqual(statProblem(fakeStat({ mode: S_IFDIR | 0o755 })), undefined);
  deepStrictEqual(
    statProblem(fakeStat({ mode: S_IFLNK | 0o777, size: 2n ** 53n - 1n })),
    undefined,
  );
  ok(statProblem(fakeStat({ mode: 0o644 })) !== undefined);
  ok(statProblem(fakeStat({ mode: 0o030644 })) !== undefined);
  ok(statProblem(fakeStat({ size: 2n ** 53n })) !== undefined);
  ok(statProblem(fakeStat({ blocks: 2n ** 63n })) !== undefined);
  ok(statProblem(fakeStat({ atimeNsec: 1e9 })) !== undefined);
  ok(statProblem(fakeStat({ ctimeNsec: 2 ** 32 - 1 })) !== undefined);
});

Deno.test("checks: statToAttr and statKey", () => {
  const stat = fakeStat({ rdevMajor: 8, rdevMinor: 1, blksize: 0, devMajor: 0, devMinor: 42 });
  const attr = statToAttr(stat);
  deepStrictEqual([attr.size, attr.blocks, attr.blksize, attr.rdev], [10, 8, 4096, 0x801]);
  deepStrictEqual(statKey(stat), "0:42:100");
});

Deno.test("checks: symlink targets the kernel cannot take are caught", () => {
  for (const target of ["a", "../b/c", "/abs", "x".repeat(4095), "é".repeat(2047)]) {
    deepStrictEqual(targetProblem(target), undefined, target.slice(0, 8));
  }
  for (const target of ["", "a\0b", "x".repeat(4096), "é".repeat(2048)]) {
    ok(targetProblem(target) !== undefined, target.slice(0, 8));
  }
});
