import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { statKey, statToAttr } from "./checks.ts";
import { fakeStat } from "./_fake_rpc.ts";

Deno.test("checks: statToAttr and statKey", () => {
  const stat = fakeStat({ rdevMajor: 8, rdevMinor: 1, blksize: 0, devMajor: 0, devMinor: 42 });
  const attr = statToAttr(stat);
  assertEquals([attr.size, attr.blocks, attr.blksize, attr.rdev], [10, 8, 4096, 0x801]);
  assertEquals(statKey(stat), "0:42:100");
});
