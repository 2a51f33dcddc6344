/**
 * POSIX conformance through a dockerfuse mount: pjdfstest (../shared/pjdfstest) run as root from a
 * directory inside an `--allow-other` mount of the glibc test image, three times in a row (a fresh
 * mount each time, one container), then once more through a mount served by io_uring rings
 * (`--io-uring`). Every subtest of every run must pass.
 */

import { deepStrictEqual, equal, fail } from "node:assert/strict";
import {
  buildPjdfstest,
  describeFailures,
  parseProve,
  runPjdfstest,
} from "../../tasks/posix/pjdfstest.ts";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { startMount } from "../e2e/harness.ts";

const SAMPLE = `/s/tests/chmod/00.t ......... ok
/s/tests/rename/02.t ........
ok 1
not ok 2 - tried 'rename pjdfstest_a pjdfstest_b', expected 0, got EEXIST
not ok 3 - tried 'lstat pjdfstest_b type', expected dir, got ENOENT
Failed 2/6 subtests
/s/tests/unlink/14.t ........ Failed 1/7 subtests

Test Summary Report
-------------------
/s/tests/rename/02.t         (Wstat: 0 Tests: 6 Failed: 2)
  Failed tests:  2-3
/s/tests/chown/00.t          (Wstat: 0 Tests: 1280 Failed: 0)
  TODO passed:   1054, 1058
/s/tests/open/07.t           (Wstat: 0 Tests: 25 Failed: 13)
  Failed tests:  1-2, 4, 6, 8, 10, 12, 14, 16, 18
                20, 22, 24
/s/tests/link/00.t           (Wstat: 256 Tests: 40 Failed: 0)
  Non-zero exit status: 1
Files=238, Tests=8798, 111 wallclock secs ( 2.49 usr  0.46 sys + 40.25 cusr 13.00 csys = 56.20 CPU)
Result: FAIL
`;

Deno.test("pjdfstest: prove's summary is parsed per file (TODO passes are not failures)", () => {
  const r = parseProve(SAMPLE, "/s/tests");
  equal(r.files, 238);
  equal(r.tests, 8798);
  equal(r.failed, 16);
  equal(r.passed, false);
  deepStrictEqual(r.failures.map((f) => [f.file, f.failed, f.detail]), [
    ["rename/02.t", 2, "2-3"],
    ["open/07.t", 13, "1-2, 4, 6, 8, 10, 12, 14, 16, 18 20, 22, 24"],
    ["link/00.t", 1, "Non-zero exit status: 1"],
  ]);
  const described = describeFailures(r).split("\n");
  equal(described[0], "  rename/02.t: 2/6 failed (2-3)");
  equal(
    described[3],
    "    not ok 2 - tried 'rename pjdfstest_a pjdfstest_b', expected 0, got EEXIST",
    "what a failing subtest tried and got (prove -v)",
  );
});

/** Runs in a row, each through a fresh mount: every one must pass every subtest. */
const RUNS = 3;
/** Subtests of the suite as the container's own filesystem (overlayfs) runs it: all must run. */
const SUBTESTS = 8798;
/** The mount options of each run: RUNS default ones, then one served by io_uring rings. */
const RUN_ARGS: string[][] = [
  ...Array.from({ length: RUNS }, () => ["--allow-other"]),
  ["--allow-other", "--io-uring"],
];
/** Containers are named after the checkout, so parallel checkouts can tell theirs apart. */
const CHECKOUT = new URL("../../", import.meta.url).pathname.replace(/\/+$/, "").split("/").pop();

Deno.test({
  name:
    `pjdfstest: every subtest passes in ${RUNS} runs in a row through dockerfuse mounts of the glibc image, and through io_uring rings`,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const suite = await buildPjdfstest();
    const bed = await ensureTestBed({ kinds: ["glibc"] });
    const container = await startTestContainer(bed, "glibc", {
      name: `dockerfuse-${CHECKOUT}-pjdfstest-${Deno.pid}`,
    });
    const failures: string[] = [];
    try {
      for (let i = 1; i <= RUN_ARGS.length; i++) {
        const args = RUN_ARGS[i - 1];
        await t.step(`run ${i} of ${RUN_ARGS.length} (${args.join(" ")})`, async () => {
          const m = await startMount("glibc", { container, args });
          try {
            const work = `${m.mountpoint}/tmp/pjdfstest-${i}`;
            await Deno.mkdir(work, { recursive: true });
            // What the client logged (watchdog lines, ESTALE, refused answers…) tells a hang
            // or a race apart.
            const logged = (): string => m.stderr().trim().split("\n").slice(-40).join("\n");
            const run = await runPjdfstest(suite, work).catch((error) => {
              throw new Error(`${error.message}\nclient log (last 40 lines):\n${logged()}`);
            });
            console.log(
              `pjdfstest run ${i} (${args.join(" ")}): ${
                run.tests - run.failed
              } of ${run.tests} subtests passed in ` +
                `${run.files} files (${run.seconds.toFixed(0)} s)`,
            );
            if (run.failed > 0 || run.tests !== SUBTESTS || !run.passed) {
              failures.push(`run ${i}: ${run.failed} of ${run.tests} failed, ${SUBTESTS} expected`);
              fail(
                `${run.failed} of ${run.tests} subtests failed (${SUBTESTS} expected, prove ` +
                  `said ${run.passed ? "PASS" : "FAIL"}):\n${describeFailures(run)}\n` +
                  `client log (last 40 lines):\n${logged()}`,
              );
            }
          } finally {
            await m.cleanup();
          }
        });
      }
    } finally {
      await removeTestContainer(bed, container);
    }
    deepStrictEqual(failures, [], "every run passes every subtest");
  },
});
