// End-to-end benchmark (issue 6): dockerfuse against sshfs over `docker exec` (passive sftp), the
// native path /proc/<pid>/root and the raw exec channel, on fresh mounts of one glibc container.
// Every timed run starts on a cold mount with the host page cache dropped; figures are medians.
// Prints a table (seconds, ratios), `--json` prints the figures as JSON instead, and the SVG chart
// is written to tasks/bench/e2e.svg (`--svg PATH` elsewhere, `--no-svg` not at all; a run of
// some rows or contenders only writes a chart when `--svg` says where).
// Run: deno task bench e2e [--runs=N] [--json] [--only=a,b] [--cpu] [--requests]
// Rows (ids for --only): find, ls, grep, read, write, create, readsmall, rm, mount, busy (the
// median of 20 stat + ls while a 256 MiB read streams, tasks/bench/busy.ts).
// `--cpu` adds, per workload and contender, the CPU seconds each process (by name) spent during
// the timed runs, and of it the system time (in the kernel): where the time goes (dockerd,
// containerd-shim, satellite, client, sftp-server…). `--requests` adds, per workload and FUSE
// contender, one more run under the kernel's FUSE request trace: the requests by opcode, their
// count, median latency and total (fuse_trace.ts; needs the fuse tracepoints, Linux 6.15+).
// Needs root (drop_caches, mounts), Docker, and sshfs/socat/openssh-sftp-server (apt-installed
// when missing).

import {
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../testbed/mod.ts";
import { measureWhileStreaming } from "./busy.ts";
import { describeProfile, FuseTrace, type RequestProfile } from "./fuse_trace.ts";

export const CLI = new URL("../../src/cli/main.ts", import.meta.url).pathname;

/**
 * The runtime flags `deno task mount` gives the CLI (deno.json, the one place they are set): a
 * benchmark times the client as users run it.
 */
export const CLI_FLAGS: readonly string[] = (() => {
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  const words = config.tasks.mount.split(/\s+/);
  const from = words.indexOf("run") + 1;
  const to = words.indexOf("src/cli/main.ts");
  if (from === 0 || to < from) throw new Error("Cannot read the mount task's flags from deno.json");
  return words.slice(from, to);
})();
const SVG_DEFAULT = new URL("./e2e.svg", import.meta.url).pathname;
export const SFTP_SERVER = "/usr/lib/openssh/sftp-server";
const BIG_MIB = 256;
const SMALL_FILES = 500;
/** The walked tree: TREE_DIRS directories of TREE_FILES empty files under /bench/tree. */
const TREE_DIRS = 60;
const TREE_FILES = 99;
/** Entries a walk of the tree meets (`find` prints them all): the tree, its directories, files. */
const TREE_ENTRIES = 1 + TREE_DIRS * (1 + TREE_FILES);
/** Timed `stat + ls` samples per run of the "while streaming" row (its figure: their median). */
const BUSY_SAMPLES = 20;
const decoder = new TextDecoder();

/** Who is measured. */
export type Contender = "dockerfuse" | "sshfs" | "native" | "channel";
const CONTENDERS: Contender[] = ["dockerfuse", "sshfs", "native", "channel"];

/** One workload: a shell script run with $P set to the container's root as a contender sees it. */
interface Workload {
  id: string;
  label: string;
  /** Script timed; absent for contenders that cannot run it. */
  script?: (p: string) => string;
  /** Script for the raw channel (container given as $C). */
  channel?: string;
  /** Untimed preparation on the same mount before the timed script. */
  before?: (p: string) => string;
  /** Untimed cleanup after it. */
  after?: (p: string) => string;
  /**
   * Warm: the script runs once untimed (cold, right after the mount) and is timed the second
   * time on the same mount, caches kept (the kernel's, and the change feed's vouching).
   */
  warm?: boolean;
  /** Contenders that cannot run it. */
  skip?: Contender[];
  /** Entries it walks: `--cpu` then also shows dockerfuse's CPU per entry (issue #13). */
  entries?: number;
}

const WORKLOADS: Workload[] = [
  {
    id: "find",
    label: "find 6,000-entry tree",
    script: (p) => `find ${p}/bench/tree >/dev/null`,
    entries: TREE_ENTRIES,
  },
  {
    id: "ls",
    label: "ls -lR 6,000-entry tree",
    script: (p) => `ls -lR ${p}/bench/tree >/dev/null`,
    entries: TREE_ENTRIES,
  },
  {
    id: "grep",
    label: "grep -r doc tree",
    script: (p) => `grep -r -c needle ${p}/bench/docs >/dev/null`,
  },
  {
    id: "read",
    label: `read ${BIG_MIB} MiB`,
    script: (p) => `cat ${p}/bench/big.bin >/dev/null`,
    channel: `docker exec $C cat /bench/big.bin >/dev/null`,
  },
  {
    id: "write",
    label: `write ${BIG_MIB} MiB + fsync`,
    script: (p) =>
      `dd if=/dev/zero of=${p}/bench/w.bin bs=1M count=${BIG_MIB} conv=fsync status=none`,
    channel: `head -c ${BIG_MIB}M /dev/zero | docker exec -i $C sh -c 'cat >/dev/null'`,
    after: (p) => `rm -f ${p}/bench/w.bin`,
  },
  {
    id: "create",
    label: `create ${SMALL_FILES} files`,
    before: (p) => `rm -rf ${p}/bench/small; mkdir ${p}/bench/small`,
    script: (p) =>
      `i=0; while [ $i -lt ${SMALL_FILES} ]; do echo "small file $i" > ${p}/bench/small/f$i; ` +
      `i=$((i+1)); done`,
  },
  {
    id: "readsmall",
    label: `read ${SMALL_FILES} files`,
    script: (p) => `cat ${p}/bench/small/* >/dev/null`,
  },
  {
    id: "rm",
    label: `delete ${SMALL_FILES} files`,
    script: (p) => `rm -r ${p}/bench/small`,
  },
  { id: "mount", label: "mount → first ls" },
  {
    id: "warmls",
    label: "warm ls -lR /usr",
    script: (p) => `ls -lR ${p}/usr >/dev/null`,
    warm: true,
    // sshfs (3.7, sftp-server) fails readlink of zoneinfo's links with EPERM: ls exits 1.
    skip: ["sshfs"],
  },
  {
    id: "warmgrep",
    label: "warm grep -r /usr/share",
    // No match anywhere: grep reads every file and exits 1.
    script: (p) => `grep -r -c zq9needle9qz ${p}/usr/share >/dev/null; [ $? -eq 1 ]`,
    warm: true,
  },
  // Issue 14: the median of BUSY_SAMPLES `stat + ls /usr/bin` while `cat` of the 256 MiB file
  // loops in the background (page cache dropped before each pass); see busy.ts.
  { id: "busy", label: "stat + ls while streaming" },
];

/** Builds the workload files inside the container (once). */
const SETUP = `
set -e
rm -rf /bench; mkdir -p /bench/tree /bench/docs
cd /bench/tree
d=0
while [ $d -lt ${TREE_DIRS} ]; do
  mkdir d$d; cd d$d
  f=0; names=""
  while [ $f -lt ${TREE_FILES} ]; do names="$names f$f.txt"; f=$((f+1)); done
  touch $names; cd ..; d=$((d+1))
done
cd /bench/docs
line="The quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet, consectetur."
i=0; while [ $i -lt 64 ]; do echo "$line $i" ; i=$((i+1)); done > /tmp/para
cat /tmp/para /tmp/para /tmp/para /tmp/para /tmp/para /tmp/para /tmp/para /tmp/para > /tmp/page
d=0
while [ $d -lt 20 ]; do
  mkdir s$d; f=0
  while [ $f -lt 25 ]; do cp /tmp/page s$d/doc$f.txt; f=$((f+1)); done
  d=$((d+1))
done
echo needle >> s7/doc3.txt
rm /tmp/para /tmp/page
head -c ${BIG_MIB}M /dev/urandom > /bench/big.bin
sync
`;

interface Options {
  runs: number;
  json: boolean;
  svg: string | null;
  only: Set<string> | null;
  contenders: Set<Contender>;
  dockerfuseArgs: string[];
  /** Also account CPU seconds per process name during each timed run (`--cpu`). */
  cpu: boolean;
  /**
   * After a row's timed runs, one more run per FUSE contender under the kernel's request trace
   * (`--requests`): which requests the workload sent, how long each kind waited (fuse_trace.ts).
   */
  requests: boolean;
}

function parseArgs(args: string[]): Options {
  const o: Options = {
    runs: 3,
    json: false,
    svg: SVG_DEFAULT,
    only: null,
    contenders: new Set(CONTENDERS),
    dockerfuseArgs: [],
    cpu: false,
    requests: false,
  };
  // "--runs=3" as well as "--runs 3" (tasks/bench.ts passes only dash-words through).
  args = args.flatMap((a) => a.startsWith("--") && a.includes("=") ? a.split(/=(.*)/s, 2) : [a]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--runs") o.runs = Math.max(1, Number(args[++i]) | 0);
    else if (a === "--json") o.json = true;
    else if (a === "--svg") o.svg = args[++i];
    else if (a === "--no-svg") o.svg = null;
    else if (a === "--only") o.only = new Set(args[++i].split(","));
    else if (a === "--contenders") o.contenders = new Set(args[++i].split(",") as Contender[]);
    else if (a === "--dockerfuse-arg") o.dockerfuseArgs.push(args[++i]);
    else if (a === "--cpu") o.cpu = true;
    else if (a === "--requests") o.requests = true;
    else throw new Error(`Cannot run the e2e benchmark: unknown argument '${a}'`);
  }
  // The README's chart is the whole table's: a partial run does not overwrite it.
  const partial = o.only !== null || o.contenders.size < CONTENDERS.length;
  if (partial && o.svg === SVG_DEFAULT && !args.includes("--svg")) o.svg = null;
  return o;
}

export async function run(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

export async function sh(script: string, env?: Record<string, string>): Promise<void> {
  const r = await run("sh", ["-c", script], env);
  if (r.code !== 0) throw new Error(`'${script}' failed (${r.code}): ${r.stderr.trim()}`);
}

export async function timed(script: string, env?: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  await sh(script, env);
  return (performance.now() - t0) / 1000;
}

export async function dropCaches(): Promise<void> {
  await sh("sync; echo 3 > /proc/sys/vm/drop_caches");
}

async function isMounted(path: string): Promise<boolean> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  return text.split("\n").some((line) => line.split(" ")[4] === path);
}

async function which(name: string): Promise<boolean> {
  return (await run("sh", ["-c", `command -v ${name}`])).code === 0;
}

/** Installs sshfs, socat and openssh-sftp-server on the host when missing. */
export async function ensureHostTools(): Promise<void> {
  const missing: string[] = [];
  if (!(await which("sshfs"))) missing.push("sshfs");
  if (!(await which("socat"))) missing.push("socat");
  try {
    await Deno.stat(SFTP_SERVER);
  } catch {
    missing.push("openssh-sftp-server");
  }
  if (missing.length === 0) return;
  console.error(`installing ${missing.join(", ")} …`);
  const env = { DEBIAN_FRONTEND: "noninteractive", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  let r = await run("apt-get", ["install", "-y", "--no-install-recommends", ...missing], env);
  if (r.code !== 0) {
    await run("apt-get", ["update"], env);
    r = await run("apt-get", ["install", "-y", "--no-install-recommends", ...missing], env);
  }
  if (r.code !== 0) {
    throw new Error(`Cannot install ${missing.join(", ")}: ${r.stderr.trim().slice(-500)}`);
  }
}

/** A cold mount of one contender; `root` is where the container's / appears. */
export interface Mounted {
  root: string;
  unmount(): Promise<void>;
}

async function waitMounted(mp: string, exited: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await isMounted(mp))) {
    if (exited() || Date.now() > deadline) throw new Error(`Cannot mount ${what} on '${mp}'`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function unmountPath(mp: string): Promise<void> {
  if (await isMounted(mp)) await run("umount", [mp]);
  if (await isMounted(mp)) await run("umount", ["-l", mp]);
}

async function assertUnmounted(mp: string): Promise<void> {
  await unmountPath(mp);
  if (await isMounted(mp)) throw new Error(`Cannot mount on '${mp}': still mounted`);
}

/** A mounting process started and seen mounted on `mp` (killed, with its stderr, if not). */
export interface MountProcess {
  exited(): boolean;
  /** The exit, once the process is gone. */
  status: Promise<Deno.CommandStatus>;
  /** Its stderr, read to the end. */
  drained: Promise<void>;
  kill(signal: Deno.Signal): void;
}

export async function spawnMount(
  what: string,
  cmd: string,
  args: string[],
  mp: string,
  env?: Record<string, string>,
  log?: { text: string },
): Promise<MountProcess> {
  await assertUnmounted(mp);
  const child = new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  let stderr = "";
  const drained = (async () => {
    for await (const c of child.stderr) {
      const text = decoder.decode(c, { stream: true });
      // A trace can be long: only the error path needs the text kept here.
      if (log !== undefined) log.text += text;
      else stderr += text;
    }
  })();
  const status = child.status.then((s) => (exited = true, s));
  try {
    await waitMounted(mp, () => exited, what);
  } catch (e) {
    if (!exited) child.kill("SIGKILL");
    await status;
    throw new Error(`${(e as Error).message}: ${stderr || log?.text.slice(-2000)}`);
  }
  return { exited: () => exited, status, drained, kill: (signal) => child.kill(signal) };
}

/** A cold dockerfuse mount; with `log`, its stderr (the `--debug` trace) is kept there. */
export async function mountDockerfuse(
  container: string,
  mp: string,
  extra: string[],
  log?: { text: string },
): Promise<Mounted> {
  const p = await spawnMount(
    "dockerfuse",
    Deno.execPath(),
    ["run", ...CLI_FLAGS, CLI, "mount", ...extra, container, mp],
    mp,
    undefined,
    log,
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

/**
 * A cold mount of `who` (the native path `native` needs none); dockerfuse with `dockerfuseArgs`,
 * its stderr kept in `log` when given.
 */
export async function mountContender(
  who: "dockerfuse" | "sshfs" | "native",
  container: string,
  native: string,
  mp: string,
  dockerfuseArgs: string[],
  log?: { text: string },
): Promise<Mounted> {
  if (who === "native") return { root: native, unmount: () => Promise.resolve() };
  if (who === "sshfs") return await mountSshfs(container, mp);
  return await mountDockerfuse(container, mp, dockerfuseArgs, log);
}

/** sshfs in passive mode over `docker exec` of the container's sftp-server (`env` for docker). */
export async function mountSshfs(
  container: string,
  mp: string,
  env?: Record<string, string>,
): Promise<Mounted> {
  const p = await spawnMount(
    "sshfs",
    "socat",
    [
      `EXEC:docker exec -i ${container} ${SFTP_SERVER}`,
      `EXEC:"sshfs -f -o passive :/ ${mp}"`,
    ],
    mp,
    env,
  );
  return {
    root: mp,
    async unmount() {
      await unmountPath(mp);
      const timer = setTimeout(() => {
        if (!p.exited()) p.kill("SIGKILL");
      }, 5000);
      await p.status;
      clearTimeout(timer);
      await p.drained.catch(() => {});
    },
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Container-side state each workload expects before it starts (native path, untimed). */
async function prepare(w: Workload, native: string): Promise<void> {
  if (w.id === "readsmall" || w.id === "rm") {
    // Same files as the create workload left; recreated natively so every run starts equal.
    await sh(
      `rm -rf ${native}/bench/small; mkdir ${native}/bench/small; i=0; ` +
        `while [ $i -lt ${SMALL_FILES} ]; do echo "small file $i" > ${native}/bench/small/f$i; ` +
        `i=$((i+1)); done`,
    );
  }
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const TICKS = 100;

/** CPU ticks per process name, and the waited-for children's ticks of this process. */
type CpuSnapshot = Map<string, number>;
/** Suffix of the entries that count system time only (the kernel's work for the process). */
const SYS = " (system)";

/** Names processes the way the CPU table shows them. */
function cpuLabel(pid: number, comm: string): string {
  if (pid === Deno.pid) return "";
  if (comm === "deno") return "dockerfuse client";
  if (comm.startsWith("ld-linux")) return "satellite";
  if (comm.startsWith("containerd-shim")) return "containerd-shim";
  return comm.replace(/\/.*$/, "");
}

/** utime+stime of every process (threads included), by name; exited ones are missed. */
async function cpuSnapshot(): Promise<CpuSnapshot> {
  const out: CpuSnapshot = new Map();
  for await (const e of Deno.readDir("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid)) continue;
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${pid}/stat`);
    } catch {
      continue; // gone
    }
    const close = text.lastIndexOf(")");
    const comm = text.slice(text.indexOf("(") + 1, close);
    const f = text.slice(close + 2).split(" ");
    // Fields after the name: [11] utime, [12] stime, [13] cutime, [14] cstime.
    if (pid === Deno.pid) {
      out.set("workload commands", Number(f[13]) + Number(f[14]));
      continue;
    }
    const label = cpuLabel(pid, comm);
    out.set(label, (out.get(label) ?? 0) + Number(f[11]) + Number(f[12]));
    out.set(label + SYS, (out.get(label + SYS) ?? 0) + Number(f[12]));
  }
  return out;
}

/** CPU seconds per name between two snapshots. */
function cpuDelta(before: CpuSnapshot, after: CpuSnapshot): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out.set(k, d / TICKS);
  }
  return out;
}

/** CPU seconds by process name, summed over `runs` runs. */
interface CpuSums {
  runs: number;
  seconds: Map<string, number>;
}

/** `name`'s CPU seconds per run (its system part with the SYS suffix). */
function perRun(sums: CpuSums, name: string): number {
  return (sums.seconds.get(name) ?? 0) / sums.runs;
}

/** `name`'s CPU per entry of a walk of `entries` (µs, mean of the runs), its user part beside. */
function perEntry(sums: CpuSums, name: string, entries: number): string {
  const all = perRun(sums, name);
  const user = all - perRun(sums, name + SYS);
  return `${(all / entries * 1e6).toFixed(1)} (user ${(user / entries * 1e6).toFixed(1)})`;
}

/** CPU seconds per process name, summed over the runs, per workload and contender. */
const cpuSums = new Map<string, CpuSums>();

function addCpu(key: string, delta: Map<string, number>): void {
  const entry = cpuSums.get(key) ?? { runs: 0, seconds: new Map() };
  entry.runs++;
  for (const [k, v] of delta) entry.seconds.set(k, (entry.seconds.get(k) ?? 0) + v);
  cpuSums.set(key, entry);
}

async function measureOnce(
  w: Workload,
  who: Contender,
  container: string,
  native: string,
  mp: string,
  opts: Options,
  trace?: { profile?: RequestProfile },
): Promise<number | null> {
  if (who === "channel") {
    if (!w.channel) return null;
    await dropCaches();
    return await timed(w.channel, { C: container, PATH: Deno.env.get("PATH") ?? "" });
  }
  if (w.id === "mount") {
    await dropCaches();
    const t0 = performance.now();
    let m: Mounted;
    if (who === "native") {
      const pid = (await run("docker", ["container", "inspect", "-f", "{{.State.Pid}}", container]))
        .stdout
        .trim();
      m = { root: `/proc/${pid}/root`, unmount: () => Promise.resolve() };
    } else if (who === "dockerfuse") m = await mountDockerfuse(container, mp, opts.dockerfuseArgs);
    else m = await mountSshfs(container, mp);
    const r = await run("ls", [m.root]);
    const t = (performance.now() - t0) / 1000;
    await m.unmount();
    if (r.code !== 0 || !r.stdout.includes("bench")) {
      throw new Error(`first ls failed: ${r.stderr}`);
    }
    return t;
  }
  if (w.skip?.includes(who)) return null;
  if (w.id === "busy") {
    const m = await mountContender(who, container, native, mp, opts.dockerfuseArgs);
    try {
      const r = await measureWhileStreaming({
        big: `${m.root}/bench/big.bin`,
        stat: `${m.root}/etc/hostname`,
        list: `${m.root}/usr/bin`,
        samples: BUSY_SAMPLES,
      });
      return r.median / 1000;
    } finally {
      await m.unmount();
    }
  }
  if (!w.script) return null;
  await prepare(w, native);
  const m = await mountContender(who, container, native, mp, opts.dockerfuseArgs);
  try {
    if (w.before) await sh(w.before(m.root));
    await dropCaches();
    if (w.warm) await sh(w.script(m.root)); // the cold run: same mount, nothing dropped after
    let t: number | null = null;
    if (trace !== undefined) {
      // Traced, not timed: the trace's own cost is not in the table.
      const tracing = await FuseTrace.start();
      try {
        await timed(w.script(m.root));
      } finally {
        trace.profile = await tracing.stop(m.root);
      }
    } else {
      const before = opts.cpu ? await cpuSnapshot() : undefined;
      t = await timed(w.script(m.root));
      if (before) addCpu(`${w.id} ${who}`, cpuDelta(before, await cpuSnapshot()));
    }
    if (w.after) await sh(w.after(m.root));
    return t;
  } finally {
    await m.unmount();
  }
}

/** Figures: seconds (median) per workload and contender; null where not applicable. */
export type Results = Record<string, Record<Contender, number | null>>;

function ratio(a: number | null | undefined, b: number | null | undefined): string {
  return a === null || a === undefined || b === null || b === undefined || b === 0
    ? "–"
    : (a / b).toFixed(2);
}

function table(results: Results, contenders: Contender[]): string {
  const head = ["workload", ...contenders.map((c) => `${c} s`), "dfuse/sshfs", "dfuse/native"];
  const rows = WORKLOADS.filter((w) => results[w.id]).map((w) => {
    const r = results[w.id];
    return [
      w.label,
      ...contenders.map((c) => (r[c] === null || r[c] === undefined ? "–" : r[c]!.toFixed(3))),
      ratio(r.dockerfuse, r.sshfs),
      ratio(r.dockerfuse, r.native),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    "| " +
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ") +
    " |";
  const sep = "| " + widths.map((w, i) => (i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":"))
    .join(" | ") +
    " |";
  return [line(head), sep, ...rows.map(line)].join("\n");
}

const COLORS: Record<Contender, string> = {
  dockerfuse: "#2b6cb0",
  sshfs: "#c05621",
  native: "#2f855a",
  channel: "#718096",
};

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Grouped horizontal bars, one group per workload, each group scaled to its slowest bar. */
export function svgChart(results: Results, contenders: Contender[], caption: string): string {
  const rows = WORKLOADS.filter((w) => results[w.id]);
  const labelW = 190, barMax = 430, barH = 12, gap = 2, groupGap = 14, top = 46, valueW = 60;
  const width = labelW + barMax + valueW + 20;
  const groupH = (c: number) => c * (barH + gap) + groupGap;
  let y = top;
  const parts: string[] = [];
  for (const w of rows) {
    const r = results[w.id];
    const present = contenders.filter((c) => r[c] !== null && r[c] !== undefined);
    const max = Math.max(...present.map((c) => r[c]!));
    const h = groupH(present.length);
    parts.push(
      `<text x="${labelW - 8}" y="${y + (h - groupGap) / 2 + 4}" text-anchor="end">${
        escapeXml(w.label)
      }</text>`,
    );
    for (const c of present) {
      const len = max > 0 ? Math.max(1, (r[c]! / max) * barMax) : 1;
      parts.push(
        `<rect x="${labelW}" y="${y}" width="${len.toFixed(1)}" height="${barH}" fill="${
          COLORS[c]
        }"/>`,
        `<text x="${(labelW + len + 4).toFixed(1)}" y="${y + barH - 2}" font-size="10">${
          r[c]!.toFixed(r[c]! < 1 ? 3 : 2)
        } s</text>`,
      );
      y += barH + gap;
    }
    y += groupGap;
  }
  const legend = contenders.map((c, i) =>
    `<rect x="${labelW + i * 110}" y="24" width="10" height="10" fill="${COLORS[c]}"/>` +
    `<text x="${labelW + i * 110 + 14}" y="33">${c}</text>`
  ).join("");
  const height = y + 24;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n` +
    `<text x="10" y="16" font-weight="bold">dockerfuse end-to-end benchmark (seconds, lower is better; ` +
    `bars scaled per workload)</text>\n${legend}\n${parts.join("\n")}\n` +
    `<text x="10" y="${height - 8}" font-size="10" fill="#555">${
      escapeXml(caption)
    }</text>\n</svg>\n`;
}

async function machine(): Promise<string> {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1] ??
    "unknown CPU";
  const kernel = (await run("uname", ["-r"])).stdout.trim();
  return `${navigator.hardwareConcurrency} cores (${cpu}), Linux ${kernel}, Deno ${Deno.version.deno}`;
}

async function setupContainer(bed: TestBed): Promise<{ container: string; native: string }> {
  const container = await startTestContainer(bed, "glibc");
  const mkdir = await run("docker", ["exec", container, "mkdir", "-p", "/usr/lib/openssh"]);
  if (mkdir.code !== 0) throw new Error(`Cannot prepare the container: ${mkdir.stderr}`);
  const cp = await run("docker", ["cp", SFTP_SERVER, `${container}:${SFTP_SERVER}`]);
  if (cp.code !== 0) throw new Error(`Cannot copy sftp-server into the container: ${cp.stderr}`);
  const setup = await run("docker", ["exec", container, "sh", "-c", SETUP]);
  if (setup.code !== 0) throw new Error(`Cannot create the workload files: ${setup.stderr}`);
  const pid = (await run("docker", ["container", "inspect", "-f", "{{.State.Pid}}", container]))
    .stdout.trim();
  return { container, native: `/proc/${pid}/root` };
}

async function main(args: string[]): Promise<number> {
  const opts = parseArgs(args);
  if (Deno.uid() !== 0) {
    console.error("Cannot run the e2e benchmark: needs root (drop_caches, mounts)");
    return 1;
  }
  await ensureHostTools();
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const { container, native } = await setupContainer(bed);
  const mp = await Deno.makeTempDir({ prefix: "dockerfuse-bench-" });
  const contenders = CONTENDERS.filter((c) => opts.contenders.has(c));
  const results: Results = {};
  try {
    for (const w of WORKLOADS) {
      if (opts.only && !opts.only.has(w.id)) continue;
      // Runs interleave the contenders, so a change in the machine's load hits them alike.
      const samples = new Map<Contender, number[]>(contenders.map((c) => [c, []]));
      const skip = new Set<Contender>();
      for (let i = 0; i < opts.runs; i++) {
        for (const c of contenders) {
          if (skip.has(c)) continue;
          const t = await measureOnce(w, c, container, native, mp, opts);
          if (t === null) skip.add(c);
          else samples.get(c)!.push(t);
        }
      }
      const row = {} as Record<Contender, number | null>;
      for (const c of contenders) {
        const xs = samples.get(c)!;
        row[c] = xs.length > 0 ? median(xs) : null;
        if (!opts.json) {
          console.error(
            `${w.id.padEnd(10)} ${c.padEnd(10)} ${
              xs.length ? xs.map((s) => s.toFixed(3)).join(" ") : "n/a"
            }`,
          );
        }
      }
      results[w.id] = row;
      // Rows without a script (mount, busy) time no workload of their own to trace.
      if (opts.requests && !opts.json && w.script !== undefined) {
        for (const c of contenders) {
          if ((c !== "dockerfuse" && c !== "sshfs") || skip.has(c)) continue;
          const trace: { profile?: RequestProfile } = {};
          await measureOnce(w, c, container, native, mp, opts, trace);
          if (trace.profile === undefined) continue;
          console.error(`${w.id.padEnd(10)} ${c.padEnd(10)} ${describeProfile(trace.profile)}`);
        }
      }
      if (opts.cpu && !opts.json) {
        for (const c of contenders) {
          const entry = cpuSums.get(`${w.id} ${c}`);
          if (!entry) continue;
          const top = [...entry.seconds].sort((a, b) => b[1] - a[1]).filter(([k, v]) =>
            !k.endsWith(SYS) && v / entry.runs >= 0.005
          );
          const seconds = (k: string): string => perRun(entry, k).toFixed(3);
          console.error(
            `${w.id.padEnd(10)} ${c.padEnd(10)} cpu s/run: ${
              top.map(([k]) => `${k} ${seconds(k)} (system ${seconds(k + SYS)})`).join(", ")
            }`,
          );
          const entries = w.entries;
          if (c === "dockerfuse" && entries !== undefined) {
            const sides = ["dockerfuse client", "satellite"];
            console.error(
              `${w.id.padEnd(10)} ${c.padEnd(10)} cpu µs/entry: ${
                sides.map((k) => `${k} ${perEntry(entry, k, entries)}`).join(", ")
              }`,
            );
          }
        }
      }
    }
  } finally {
    await unmountPath(mp);
    await Deno.remove(mp, { recursive: true }).catch(() => {});
    await removeTestContainer(bed, container);
  }
  const where = await machine();
  const caption = `${where}; median of ${opts.runs} cold runs; ${
    new Date().toISOString().slice(0, 10)
  }`;
  if (opts.svg) {
    await Deno.writeTextFile(opts.svg, svgChart(results, contenders, caption));
    // The repository's formatter covers SVG too: leave the file as `deno fmt` would.
    await run(Deno.execPath(), ["fmt", "--quiet", opts.svg]);
  }
  if (opts.json) {
    console.log(JSON.stringify({ machine: where, runs: opts.runs, seconds: results }, null, 2));
  } else {
    console.log(table(results, contenders));
    console.log(
      `\nmachine: ${where}; median of ${opts.runs} runs, cold mounts, page cache dropped`,
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
