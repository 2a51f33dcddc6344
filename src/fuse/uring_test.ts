import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { MAX_URING_CPUS, possibleCpus, uringCpus } from "./uring.ts";

Deno.test("possibleCpus: reads the kernel's CPU list", () => {
  const of = (text: string) => possibleCpus(() => text);
  deepStrictEqual([of("0\n"), of("0-1\n"), of("0-3,8-11"), of("0,2")], [1, 2, 12, 3]);
  deepStrictEqual([of(""), of("x"), of("0-")], [undefined, undefined, undefined]);
  strictEqual(
    possibleCpus(() => {
      throw new Error("no sysfs");
    }),
    undefined,
  );
});

Deno.test("uringCpus: says why rings cannot be had, else how many", () => {
  strictEqual(uringCpus(() => undefined), "this kernel has no FUSE over io_uring");
  strictEqual(uringCpus(() => "N\n"), "/sys/module/fuse/parameters/enable_uring is N");
  const cpus = possibleCpus()!;
  strictEqual(
    uringCpus(() => "Y\n", () => String(`0-${MAX_URING_CPUS}`)),
    `${MAX_URING_CPUS + 1} CPUs (rings serve at most ${MAX_URING_CPUS})`,
  );
  // With the switch on, a ring can be made here (the test machines run Linux 6.14+).
  strictEqual(uringCpus(() => "Y\n", () => "0-1"), 2);
  strictEqual(cpus >= 1, true);
});
