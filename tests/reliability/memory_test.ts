// The satellite is a guest in the container: whatever the workload, its anonymous memory stays
// bounded, and in a container with little memory the sequence "write 256 MiB, find /usr, read
// 256 MiB" through the mount never makes the container's OOM killer fire.

import { ok, strictEqual } from "node:assert/strict";
import { ensureTestBed, startTestContainer, type TestBed } from "../../tasks/testbed/mod.ts";
import { docker, exitWithin, LONG, sh, sleep, startMount } from "./helpers.ts";

/** The bound the issue sets for the satellite's RssAnon, whatever the workload. */
const RSS_ANON_LIMIT = 32 * 1024 * 1024;
/** Runs of the sequence (the acceptance is 10; DOCKERFUSE_LONG=1 runs all of them). */
const RUNS = LONG ? 10 : 2;

/** A glibc test container limited to 64 MiB of memory (no swap). */
function startSmallContainer(bed: TestBed): Promise<string> {
  return startTestContainer(bed, "glibc", { runArgs: ["--memory", "64m", "--memory-swap", "64m"] });
}

/** RssAnon of a host pid in bytes (0 when it is gone). */
async function rssAnon(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  const match = /^RssAnon:\s+(\d+) kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Host pid of the satellite in `container` (its command line names satellite.js). */
async function satelliteHostPid(container: string): Promise<number> {
  const r = await docker(["top", container, "-o", "pid,args"]);
  for (const line of r.stdout.split("\n").slice(1)) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (match && match[2].includes("satellite.js")) return Number(match[1]);
  }
  throw new Error(`no satellite process in container ${container}:\n${r.stdout}`);
}

/** The OOM-kill count of the memory cgroup holding `pid` (cgroup v2 or v1). */
async function oomKills(pid: number): Promise<number> {
  const lines = (await Deno.readTextFile(`/proc/${pid}/cgroup`)).split("\n");
  const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  const file = v1
    ? `/sys/fs/cgroup/memory${v1.slice(v1.lastIndexOf(":") + 1)}/memory.oom_control`
    : `/sys/fs/cgroup${lines.find((l) => l.startsWith("0::"))!.slice(3)}/memory.events`;
  const match = /^oom_kill (\d+)$/m.exec(await Deno.readTextFile(file));
  if (!match) throw new Error(`no oom_kill counter in ${file}`);
  return Number(match[1]);
}

Deno.test({
  name: `satellite: RssAnon <= 32 MB and no OOM kill in a --memory 64m container (${RUNS} runs)`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const bed = await ensureTestBed({ kinds: ["glibc"] });
    const figures: string[] = [];
    for (let run = 1; run <= RUNS; run++) {
      const container = await startSmallContainer(bed);
      const m = await startMount("glibc", { container });
      let peak = 0;
      let sampling = true;
      try {
        const pid = await satelliteHostPid(container);
        const sampler = (async () => {
          while (sampling) {
            peak = Math.max(peak, await rssAnon(pid));
            await sleep(50);
          }
        })();
        const kills = await oomKills(pid);
        const score = (await Deno.readTextFile(`/proc/${pid}/oom_score_adj`)).trim();
        ok(score === "1000", `the satellite's oom_score_adj is ${score}, not 1000`);
        const idle = await rssAnon(pid);
        const phases: [string, string][] = [
          ["write", "dd if=/dev/zero of=$M/tmp/big bs=1M count=256 status=none"],
          ["find", "find $M/usr | wc -l"],
          // A new open drops the file's pages from the host's cache (FUSE without keep_cache),
          // so the satellite serves every byte.
          ["read", "dd if=$M/tmp/big of=/dev/null bs=1M status=none"],
        ];
        const after: string[] = [];
        for (const [phase, script] of phases) {
          const r = await sh(m.mountpoint, script);
          ok(
            r.code === 0,
            `run ${run}, ${phase} failed (${r.code}): ${r.stderr}\n${m.stderr()}`,
          );
          after.push(`${phase} ${(await rssAnon(pid) / 2 ** 20).toFixed(1)}`);
        }
        sampling = false;
        await sampler;
        const alive = await rssAnon(pid);
        ok(alive > 0, `run ${run}: the satellite died:\n${m.stderr()}`);
        const killed = await oomKills(pid) - kills;
        const oomKilled = (await docker(["inspect", "-f", "{{.State.OOMKilled}}", container]))
          .stdout.trim();
        figures.push(
          `run ${run}: RssAnon idle ${(idle / 2 ** 20).toFixed(1)} MiB, after ${
            after.join(", ")
          } MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB; oom_kill +${killed}`,
        );
        ok(killed === 0 && oomKilled === "false", `run ${run}: OOM kill:\n${figures.at(-1)}`);
        ok(peak <= RSS_ANON_LIMIT, `run ${run}: peak RssAnon too high:\n${figures.at(-1)}`);
      } finally {
        sampling = false;
        await m.cleanup();
        await docker(["rm", "-f", container], false);
      }
    }
    console.log(figures.join("\n"));
  },
});

Deno.test({
  name: "satellite: when the container runs out of memory anyway, the kernel kills the satellite",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const bed = await ensureTestBed({ kinds: ["glibc"] });
    const container = await startSmallContainer(bed);
    // Without reconnect the mount ends with the killed satellite, so its last words are read
    // (the default would redeploy it: tests/reliability/reconnect_test.ts).
    const m = await startMount("glibc", { container, args: ["--no-reconnect"] });
    try {
      // A user process needing 52 MiB (tail keeps a line without newline whole): with the
      // satellite (~17 MiB) it does not fit in 64 MiB, alone it does. Without the satellite's
      // oom_score_adj the kernel kills tail (the larger process) and the satellite lives on.
      const hog = await docker(
        ["exec", container, "sh", "-c", "head -c 52M /dev/zero | tail -n 1 | wc -c"],
        false,
      );
      // tail usually survives; the kernel may still kill it too when it allocates faster than
      // the satellite's memory is given back (seen in 1 of 4 runs): that is not asserted.
      console.log(`the container's process printed ${hog.stdout.trim()} (${52 << 20} if it lived)`);
      const code = await exitWithin(m, 20_000);
      strictEqual(code, 8, m.stderr());
      ok(/oom_score_adj 1000/.test(m.stderr()), `the client does not say why:\n${m.stderr()}`);
    } finally {
      await m.cleanup();
      await docker(["rm", "-f", container], false);
    }
  },
});
