// Remote-engine benchmark (issue 14): the local engine reached as `tcp://127.0.0.1:PORT` through
// the delay proxy (every chunk delayed `--delay-ms` each way, so a round trip costs twice that),
// dockerfuse (DOCKER_HOST=tcp://…, the sidecar deployment `auto` picks for remote engines) against
// sshfs in passive mode whose `docker exec` goes through the same proxy (DOCKER_HOST=tcp://…).
// Workloads on one glibc test container: `find /usr`, `ls -lR /usr` (5,965 entries, 690
// directories, 604 symlinks), 100 small creates, a 64 MiB read and mount → first `ls`.
// Every run starts on a cold mount with the host page cache dropped; contenders take turns.
// Run: deno task bench remote [--delay-ms=25] [--runs=N] [--only=find,ls] [--contenders=a,b]
//      [--dockerfuse-arg=ARG] [--json]
// Needs root (drop_caches, mounts), Docker, sshfs/socat/openssh-sftp-server (apt-installed).

import { ensureTestBed, removeTestContainer, startTestContainer } from "../testbed/mod.ts";
import { startDelayProxy } from "./delay_proxy.ts";
import {
  CLI,
  CLI_FLAGS,
  dropCaches,
  ensureHostTools,
  median,
  type Mounted,
  mountSshfs,
  run,
  SFTP_SERVER,
  sh,
  spawnMount,
  timed,
  unmountPath,
} from "./e2e.ts";

type Contender = "dockerfuse" | "sshfs";
const SMALL_FILES = 100;

interface Workload {
  id: string;
  label: string;
  /** Timed script; $P is where the container's / appears. Absent: the mount itself is timed. */
  script?: (p: string) => string;
  before?: (p: string) => string;
  after?: (p: string) => string;
}

const WORKLOADS: Workload[] = [
  { id: "find", label: "`find /usr`", script: (p) => `find ${p}/usr >/dev/null` },
  {
    id: "ls",
    label: "`ls -lR /usr`",
    // Exit 1 ("minor problems") is taken: sshfs answers some READLINKs EPERM here.
    script: (p) => `ls -lR ${p}/usr >/dev/null 2>/tmp/dockerfuse-bench-ls.err || [ $? -eq 1 ]`,
  },
  {
    id: "create",
    label: `${SMALL_FILES} small creates`,
    before: (p) => `rm -rf ${p}/tmp/small; mkdir ${p}/tmp/small`,
    script: (p) =>
      `i=0; while [ $i -lt ${SMALL_FILES} ]; do echo "small file $i" > ${p}/tmp/small/f$i; ` +
      `i=$((i+1)); done`,
    after: (p) => `rm -rf ${p}/tmp/small`,
  },
  { id: "read", label: "read 64 MiB", script: (p) => `cat ${p}/data/large.bin >/dev/null` },
  { id: "mount", label: "mount → first `ls`" },
];

interface Options {
  delayMs: number;
  runs: number;
  json: boolean;
  only: Set<string> | null;
  contenders: Contender[];
  dockerfuseArgs: string[];
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    delayMs: 25,
    runs: 1,
    json: false,
    only: null,
    contenders: ["dockerfuse", "sshfs"],
    dockerfuseArgs: [],
  };
  args = args.flatMap((a) => a.startsWith("--") && a.includes("=") ? a.split(/=(.*)/s, 2) : [a]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--delay-ms") o.delayMs = Number(args[++i]);
    else if (a === "--runs") o.runs = Math.max(1, Number(args[++i]) | 0);
    else if (a === "--json") o.json = true;
    else if (a === "--only") o.only = new Set(args[++i].split(","));
    else if (a === "--contenders") o.contenders = args[++i].split(",") as Contender[];
    else if (a === "--dockerfuse-arg") o.dockerfuseArgs.push(args[++i]);
    else throw new Error(`Cannot run the remote benchmark: unknown argument '${a}'`);
  }
  return o;
}

async function mount(
  who: Contender,
  container: string,
  mp: string,
  engine: string,
  opts: Options,
): Promise<Mounted> {
  if (who === "dockerfuse") {
    const p = await spawnMount(
      "dockerfuse",
      Deno.execPath(),
      ["run", ...CLI_FLAGS, CLI, "mount", ...opts.dockerfuseArgs, container, mp],
      mp,
      { DOCKER_HOST: engine },
    );
    return {
      root: mp,
      async unmount() {
        if (!p.exited()) p.kill("SIGTERM");
        await p.status;
        await p.drained.catch(() => {});
        await unmountPath(mp);
      },
    };
  }
  // socat's addresses cannot hold the engine's "tcp://…": docker reads it from the environment.
  return await mountSshfs(container, mp, { DOCKER_HOST: engine });
}

async function measureOnce(
  w: Workload,
  who: Contender,
  container: string,
  mp: string,
  engine: string,
  opts: Options,
): Promise<number> {
  if (w.script === undefined) {
    await dropCaches();
    const t0 = performance.now();
    const m = await mount(who, container, mp, engine, opts);
    const r = await run("ls", [m.root]);
    const t = (performance.now() - t0) / 1000;
    await m.unmount();
    if (r.code !== 0 || !r.stdout.includes("usr")) throw new Error(`first ls failed: ${r.stderr}`);
    return t;
  }
  const m = await mount(who, container, mp, engine, opts);
  try {
    if (w.before) await sh(w.before(m.root));
    await dropCaches();
    const t = await timed(w.script(m.root));
    if (w.after) await sh(w.after(m.root));
    return t;
  } finally {
    await m.unmount();
  }
}

async function main(args: string[]): Promise<number> {
  const opts = parseArgs(args);
  if (Deno.uid() !== 0) {
    console.error("Cannot run the remote benchmark: needs root (drop_caches, mounts)");
    return 1;
  }
  await ensureHostTools();
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const target = bed.dockerHost.startsWith("unix://")
    ? bed.dockerHost
    : "unix:///var/run/docker.sock";
  const proxy = startDelayProxy({
    target: { transport: "unix", path: target.slice(7) },
    delayMs: opts.delayMs,
  });
  const name = `dockerfuse-bench-remote-${crypto.randomUUID().slice(0, 8)}`;
  const container = await startTestContainer(bed, "glibc", { name });
  const mp = await Deno.makeTempDir({ prefix: "dockerfuse-bench-remote-" });
  const results: Record<string, Record<Contender, number>> = {};
  try {
    await sh(
      `docker exec ${container} mkdir -p /usr/lib/openssh && ` +
        `docker cp ${SFTP_SERVER} ${container}:${SFTP_SERVER}`,
    );
    for (const w of WORKLOADS) {
      if (opts.only && !opts.only.has(w.id)) continue;
      const samples = new Map<Contender, number[]>(opts.contenders.map((c) => [c, []]));
      for (let i = 0; i < opts.runs; i++) {
        for (const c of opts.contenders) {
          const t = await measureOnce(w, c, container, mp, proxy.url, opts);
          samples.get(c)!.push(t);
          console.error(`${w.id.padEnd(7)} ${c.padEnd(10)} ${t.toFixed(3)} s`);
        }
      }
      results[w.id] = Object.fromEntries(
        opts.contenders.map((c) => [c, median(samples.get(c)!)]),
      ) as Record<Contender, number>;
    }
  } finally {
    await unmountPath(mp);
    await Deno.remove(mp, { recursive: true }).catch(() => {});
    await removeTestContainer(bed, container);
    await proxy.close();
  }
  if (opts.json) {
    console.log(JSON.stringify({ delayMs: opts.delayMs, runs: opts.runs, seconds: results }));
    return 0;
  }
  const rtt = 2 * opts.delayMs;
  console.log(`| workload (${rtt} ms round trip) | ${opts.contenders.join(" | ")} |`);
  console.log(`| --- | ${opts.contenders.map(() => "---:").join(" | ")} |`);
  for (const w of WORKLOADS) {
    const r = results[w.id];
    if (r === undefined) continue;
    console.log(`| ${w.label} | ${opts.contenders.map((c) => r[c].toFixed(2)).join(" | ")} |`);
  }
  console.log(`\nmedian of ${opts.runs} cold run(s), seconds`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
