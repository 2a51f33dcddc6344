// Encoders of the ABI module: 64-bit fields written without BigInt keep exact values.

import { encodeAttr, opcodeName, splitTimeout } from "../../src/fuse/abi.ts";
import { assertEquals } from "./helpers.ts";

Deno.test("abi: attr times and sizes encode exactly as 64-bit values", () => {
  const v = new DataView(new ArrayBuffer(88));
  const secs = [0, 1, -1, 1_700_000_000, -1_700_000_000, 2 ** 40 + 5, -(2 ** 40) - 5];
  for (const sec of [...secs, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]) {
    const t = { sec, nsec: 999_999_999 };
    encodeAttr(v, 0, {
      ino: 2n ** 64n - 1n,
      size: Math.max(0, sec),
      blocks: 7,
      atime: t,
      mtime: t,
      ctime: t,
      mode: 0o100644,
      nlink: 1,
      uid: 4294967295,
      gid: 0,
      rdev: 0,
    });
    assertEquals(v.getBigInt64(24, true), BigInt(sec), `atime ${sec}`);
    assertEquals(v.getBigInt64(40, true), BigInt(sec), `ctime ${sec}`);
    assertEquals(v.getBigUint64(8, true), BigInt(Math.max(0, sec)), `size ${sec}`);
    assertEquals(v.getBigUint64(0, true), 2n ** 64n - 1n, "ino");
    assertEquals(v.getUint32(48, true), 999_999_999, "nsec");
    assertEquals(v.getUint32(68, true), 4294967295, "uid");
  }
});

Deno.test("abi: timeouts split into seconds and nanoseconds; opcode names", () => {
  assertEquals(splitTimeout(1.5), [1n, 500_000_000]);
  assertEquals(splitTimeout(0), [0n, 0]);
  assertEquals(splitTimeout(-3), [0n, 0]);
  assertEquals(splitTimeout(NaN), [0n, 0]);
  assertEquals([opcodeName(1), opcodeName(45), opcodeName(4242)], ["LOOKUP", "RENAME2", "OP4242"]);
});
