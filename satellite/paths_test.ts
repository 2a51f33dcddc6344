import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { PATH_MAX } from "../src/linux/mod.ts";
import { MAX_PATH_BYTES } from "../src/protocol/mod.ts";
import { joinBytes, pathRuns, splitPath, tooLong } from "./paths.ts";

const text = (b: Uint8Array): string => new TextDecoder().decode(b);

Deno.test("splitPath takes paths past PATH_MAX up to MAX_PATH_BYTES, names up to NAME_MAX", () => {
  const deep = Array.from({ length: 40 }, (_, i) => `${i}`.padStart(200, "d")).join("/");
  ok(deep.length > PATH_MAX);
  equal(splitPath(deep)?.length, 40);
  equal(tooLong(deep), false);
  const huge = "a/".repeat(MAX_PATH_BYTES / 2) + "b";
  equal(splitPath(huge), undefined);
  equal(tooLong(huge), true);
  equal(splitPath(`x/${"n".repeat(256)}`), undefined);
  equal(tooLong(`x/${"n".repeat(256)}`), true);
  equal(splitPath(`x/${"n".repeat(255)}`)?.length, 2);
  for (const bad of ["a//b", "a/./b", "..", "/a", "a/", "a\0b"]) {
    equal(splitPath(bad), undefined, bad);
    equal(tooLong(bad), false, bad);
  }
  deepStrictEqual(splitPath(""), []);
});

Deno.test("pathRuns cuts components into runs one openat2 takes, as long as they can be", () => {
  const parts = Array.from(
    { length: 60 },
    (_, i) => new TextEncoder().encode(`${i}`.padStart(255, "x")),
  );
  const runs = pathRuns(parts);
  deepStrictEqual(runs.flat(), parts, "every component once, in order");
  for (const run of runs) ok(joinBytes(run).length <= PATH_MAX, `${joinBytes(run).length}`);
  // 256 bytes per component with its separator: 16 fit 4096 bytes with the NUL
  deepStrictEqual(runs.map((r) => r.length), [16, 16, 16, 12]);
  deepStrictEqual(pathRuns(parts.slice(0, 3), 10).map((r) => r.length), [1, 1, 1]);
  deepStrictEqual(pathRuns([]), []);
  equal(text(joinBytes([parts[0].subarray(250), parts[1].subarray(253)])), "xxxx0/x1\0");
});
