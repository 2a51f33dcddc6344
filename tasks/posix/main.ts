/**
 * `deno task posix [--runs=N] [--io-uring] [--native] [FILE.t…]`: pjdfstest through a fresh
 * dockerfuse mount (`--allow-other`, and `--io-uring` when given) of a glibc test container, N
 * times in a row; `--native` runs it once more in the container's own filesystem
 * (`/proc/PID/root`, overlayfs) for comparison. Prints one line per run and the failing files.
 * Exit status 1 when any run through the mount failed a subtest.
 *
 * @module
 */

import { cliRunArgs } from "../../src/cli/launch.ts";
import {
  ensureFuseTools,
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
} from "../testbed/mod.ts";
import { run } from "../testbed/system.ts";
import { buildPjdfstest, describeFailures, type PosixRun, runPjdfstest } from "./pjdfstest.ts";

function report(label: string, r: PosixRun): void {
  console.log(
    `${label}: ${r.tests - r.failed} of ${r.tests} subtests passed, ${r.failed} failed in ` +
      `${r.failures.length} files (${r.seconds.toFixed(0)} s)`,
  );
  if (r.failed > 0) console.log(describeFailures(r));
}

async function mounted(path: string): Promise<boolean> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  return text.split("\n").some((line) => line.split(" ")[4] === path);
}

async function main(args: string[]): Promise<number> {
  const runs = Number(args.find((a) => a.startsWith("--runs="))?.slice(7) ?? 1);
  const native = args.includes("--native");
  const mountArgs = ["--allow-other", ...(args.includes("--io-uring") ? ["--io-uring"] : [])];
  const files = args.filter((a) => !a.startsWith("--"));
  if (!Number.isInteger(runs) || runs < 1) {
    console.error("Usage: deno task posix [--runs=N] [--io-uring] [--native] [FILE.t…]");
    return 2;
  }
  const suite = await buildPjdfstest();
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  await ensureFuseTools();
  // Named after the checkout, so parallel checkouts can tell theirs apart.
  const checkout = new URL("../../", import.meta.url).pathname.replace(/\/+$/, "").split("/").pop();
  const container = await startTestContainer(bed, "glibc", {
    name: `dockerfuse-${checkout}-posix-${Deno.pid}`,
  });
  let failedRuns = 0;
  try {
    for (let i = 1; i <= runs; i++) {
      const mp = await Deno.makeTempDir({ prefix: "dockerfuse-posix-" });
      const child = new Deno.Command(Deno.execPath(), {
        args: cliRunArgs(["mount", ...mountArgs, container, mp]),
        stdin: "null",
        stdout: "null",
        stderr: "inherit",
      }).spawn();
      try {
        const deadline = Date.now() + 60_000;
        while (!(await mounted(mp))) {
          if (Date.now() > deadline) throw new Error(`Cannot mount '${container}' on '${mp}'`);
          await new Promise((r) => setTimeout(r, 50));
        }
        const work = `${mp}/tmp/pjdfstest-${i}`;
        await Deno.mkdir(work, { recursive: true });
        const r = await runPjdfstest(suite, work, { files: files.length > 0 ? files : undefined });
        report(`run ${i} (dockerfuse)`, r);
        if (r.failed > 0) failedRuns++;
      } finally {
        child.kill("SIGTERM");
        await child.status;
        await Deno.remove(mp, { recursive: true }).catch(() => {});
      }
    }
    if (native) {
      // The overlay's merged directory as the host sees it: the container's filesystem, at a
      // path getcwd(3) can name (prove cannot work from /proc/PID/root, another namespace).
      const merged = (await run("docker", [
        "inspect",
        "-f",
        "{{if .GraphDriver.Data}}{{.GraphDriver.Data.MergedDir}}{{end}}",
        container,
      ])).stdout.trim();
      const pid = (await run("docker", ["inspect", "-f", "{{.State.Pid}}", container])).stdout
        .trim();
      const base = merged !== "" && merged !== "<no value>" ? merged : `/proc/${pid}/root`;
      const work = `${base}/tmp/pjdfstest-native`;
      await Deno.mkdir(work, { recursive: true });
      report(
        "native (container's own filesystem)",
        await runPjdfstest(suite, work, {
          files: files.length > 0 ? files : undefined,
        }),
      );
    }
  } finally {
    await removeTestContainer(bed, container);
  }
  return failedRuns === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
