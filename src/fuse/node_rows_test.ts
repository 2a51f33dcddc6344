import { deepStrictEqual } from "node:assert/strict";
import { freeRow, PROBES, rowOf } from "./node_rows.ts";

/** A table of `rows` rows of `stride` words, and its 32-bit halves. */
function table(rows: number, stride: number): { words: BigInt64Array; halves: Int32Array } {
  const buffer = new SharedArrayBuffer(rows * stride * 8);
  return { words: new BigInt64Array(buffer), halves: new Int32Array(buffer) };
}

Deno.test("node rows: found by the 64-bit id, high half included", () => {
  for (const stride of [2, 3]) {
    const { words, halves } = table(16, stride);
    const low = 5, high = 2 ** 32 + 5, top = 2 ** 52 + 5; // same low 32 bits
    words[stride * 5] = BigInt(high);
    words[stride * 6] = BigInt(top);
    deepStrictEqual(rowOf(halves, stride, low), -1);
    deepStrictEqual(rowOf(halves, stride, high), 5);
    deepStrictEqual(rowOf(halves, stride, top), 6);
    words[stride * 7] = BigInt(low);
    deepStrictEqual(rowOf(halves, stride, low), 7);
  }
});

Deno.test("node rows: a free row is one whose deadline has passed, within the probes", () => {
  for (const stride of [2, 3]) {
    const { words, halves } = table(16, stride);
    const now = 1_764_000_000_123; // ms since 1970: the deadline's high half is not zero
    for (let i = 0; i < 16; i++) words[stride * i + 1] = BigInt(now + 1);
    deepStrictEqual(freeRow(halves, stride, 3, now), -1);
    words[stride * 9 + 1] = BigInt(now);
    deepStrictEqual(freeRow(halves, stride, 3, now), 9);
    words[stride * 4 + 1] = 0n;
    deepStrictEqual(freeRow(halves, stride, 3, now), 4);
    // Rows beyond the probe sequence are not taken.
    for (let i = 0; i < 16; i++) words[stride * i + 1] = BigInt(now + 1);
    words[stride * ((3 + PROBES) & 15) + 1] = 0n;
    deepStrictEqual(freeRow(halves, stride, 3, now), -1);
  }
});
