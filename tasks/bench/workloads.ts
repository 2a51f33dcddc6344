// What users run on a mount (issue 14's real workloads): version control, a build, a package
// manager, an archive, an editor saving, a copy out. dockerfuse against sshfs (passive sftp over
// `docker exec`) and the native path (the overlay's merged directory), on one glibc container. Every timed run
// starts on a cold mount with the host page cache dropped, except "again" rows (the same command a
// second time on the same mount). Figures are medians; nothing is asserted about time.
//
// Then, for dockerfuse, where the requests go: one more run of each workload on a `--debug` mount
// (which answers every request on the JS thread, so none is hidden), with the kernel's requests
// during the timed command counted by opcode and the satellite's calls by method. Those calls are
// an upper bound: without --debug the reader thread answers some requests from its own records.
//
// Run: deno task bench workloads [--runs=N] [--only=a,b] [--no-profile]
// Needs root (drop_caches, mounts), Docker, git, gcc, make, vim and npm on the host, and
// sshfs/socat/openssh-sftp-server (apt-installed when missing).

import { ensureTestBed, removeTestContainer, startTestContainer } from "../testbed/mod.ts";
import {
  dropCaches,
  ensureHostTools,
  median,
  mountContender,
  run,
  SFTP_SERVER,
  sh,
  timed,
  unmountPath,
} from "./e2e.ts";

type Contender = "dockerfuse" | "sshfs" | "native";
const CONTENDERS: Contender[] = ["dockerfuse", "sshfs", "native"];

interface Workload {
  id: string;
  label: string;
  /** The timed command; `p` is where the container's `/` is. */
  script: (p: string) => string;
  /** Untimed, on the same mount, before it (the page cache is dropped after it). */
  before?: (p: string) => string;
  /** Untimed, on the native path, before the mount. */
  prepare?: (native: string) => string;
  /** Timed the second time on the same mount (the first run untimed, nothing dropped). */
  again?: boolean;
}

/**
 * Puts the index's stat data back to what the native path shows, as a repository used inside the
 * container has it: git trusts an entry whose stat data (mtime and ctime with nanoseconds, inode,
 * size, owner) match, and reads the file again otherwise. A run through a mount that shows other
 * stat data rewrites the index with its own, which the next run would pay for.
 */
function gitIndexAsNative(native: string): string {
  return `git -C ${native}/work/repo update-index -q --really-refresh >/dev/null 2>&1 || true`;
}

/** Files of the editor workload. */
const EDITED = 20;
/** Source files of the build. */
const SOURCES = 40;

const WORKLOADS: Workload[] = [
  {
    id: "gitstatus",
    label: "git status",
    prepare: gitIndexAsNative,
    script: (p) => `git -C ${p}/work/repo status --porcelain >/dev/null`,
  },
  {
    id: "gitstatus2",
    label: "git status, again",
    prepare: gitIndexAsNative,
    script: (p) => `git -C ${p}/work/repo status --porcelain >/dev/null`,
    again: true,
  },
  {
    id: "gitcommit",
    label: "edit 10 files, git add -A + commit",
    prepare: gitIndexAsNative,
    script: (p) =>
      `cd ${p}/work/repo && for i in 0 1 2 3 4 5 6 7 8 9; do echo "$$ $i" >> notes/n$i.txt; done && ` +
      `git add -A && git commit -q -m work`,
  },
  {
    id: "gitlog",
    label: "git log -p of 20 commits",
    prepare: gitIndexAsNative,
    script: (p) => `git -C ${p}/work/repo log -p -n 20 >/dev/null`,
  },
  {
    id: "make",
    label: `make -j2 (${SOURCES} C files)`,
    before: (p) => `make -s -C ${p}/work/build clean`,
    script: (p) => `make -s -j2 -C ${p}/work/build >/dev/null`,
  },
  {
    id: "npmls",
    label: "npm ls --all",
    // Exit status 1 only reports extraneous or missing packages: the tree was read either way.
    script: (p) => `cd ${p}/work/repo && { npm ls --all --offline >/dev/null 2>&1 || true; }`,
  },
  {
    id: "tar",
    label: "tar of the repository",
    script: (p) => `tar cf - -C ${p}/work/repo . | wc -c >/dev/null`,
  },
  {
    id: "untar",
    label: "tar x of the repository into it",
    // What a package manager or a checkout does: directories made, then filled, file by file.
    prepare: (native) =>
      `rm -rf ${native}/work/untar && mkdir ${native}/work/untar && ` +
      `tar cf /tmp/dockerfuse-bench-untar.tar -C ${native}/work/repo .`,
    script: (p) => `tar xf /tmp/dockerfuse-bench-untar.tar -C ${p}/work/untar`,
  },
  {
    id: "vim",
    label: `vim saves ${EDITED} files`,
    script: (p) =>
      `for f in ${p}/work/edit/*.txt; do ` +
      `vim -u NONE -N -n -es -c 'normal Goone more line' -c wq "$f" </dev/null || exit 1; done`,
  },
  {
    id: "cp",
    label: "cp -a of the repository out",
    before: () => "rm -rf /tmp/dockerfuse-bench-cp",
    script: (p) =>
      `cp -a ${p}/work/repo /tmp/dockerfuse-bench-cp && rm -rf /tmp/dockerfuse-bench-cp`,
  },
];

/** The packages copied into the repository: the project's own node_modules, runtimes left out. */
function repoSetup(native: string): string {
  const nm = new URL("../../node_modules", import.meta.url).pathname;
  return `
set -e
rm -rf ${native}/work; mkdir -p ${native}/work/repo/node_modules ${native}/work/repo/notes
cd ${nm}
for d in *; do case "$d" in deno|@deno|.*) ;; *) cp -a "$d" ${native}/work/repo/node_modules/ ;; esac; done
cd ${native}/work/repo
cp ${new URL("../../package.json", import.meta.url).pathname} package.json
i=0; while [ $i -lt 10 ]; do echo "note $i" > notes/n$i.txt; i=$((i+1)); done
git init -q . && git config user.email bench@dockerfuse && git config user.name bench
git add -A && git commit -q -m initial
i=0; while [ $i -lt 20 ]; do echo "change $i" >> notes/n$((i % 10)).txt; git commit -qam "change $i"; i=$((i+1)); done
# an index written well after the files' times holds no "racily clean" entries
sleep 1.1; git update-index -q --really-refresh
mkdir -p ${native}/work/build ${native}/work/edit
cd ${native}/work/build
i=0; objs=""
while [ $i -lt ${SOURCES} ]; do
  printf '#include <stdio.h>\\n#include <string.h>\\nint f%d(const char *s) { int n = 0; for (size_t k = 0; k < strlen(s); k++) n += s[k] * %d; return n; }\\n' $i $i > f$i.c
  objs="$objs f$i.o"; i=$((i+1))
done
printf 'int main(void) { return 0; }\\n' > main.c
printf 'OBJS = main.o%s\\napp: $(OBJS)\\n\\tcc -o app $(OBJS)\\n%%.o: %%.c\\n\\tcc -O1 -c -o $@ $<\\nclean:\\n\\trm -f app *.o\\n' "$objs" > Makefile
cd ${native}/work/edit
i=0; while [ $i -lt ${EDITED} ]; do seq 1 3000 | sed "s/^/line of file $i: /" > e$i.txt; i=$((i+1)); done
chown -R 0:0 ${native}/work
`;
}

/**
 * The container's files as the host sees them without a mount of ours: the overlay's merged
 * directory (git needs a working directory it can name, which /proc/<pid>/root does not give),
 * else /proc/<pid>/root.
 */
async function nativeRoot(container: string): Promise<string> {
  const merged = (await run("docker", [
    "container",
    "inspect",
    "-f",
    "{{.GraphDriver.Data.MergedDir}}",
    container,
  ])).stdout.trim();
  if (merged.startsWith("/") && (await run("test", ["-d", merged])).code === 0) return merged;
  const pid = (await run("docker", ["container", "inspect", "-f", "{{.State.Pid}}", container]))
    .stdout.trim();
  return `/proc/${pid}/root`;
}

interface Options {
  runs: number;
  only: Set<string> | null;
  profile: boolean;
}

function parseArgs(args: string[]): Options {
  const o: Options = { runs: 3, only: null, profile: true };
  args = args.flatMap((a) => a.startsWith("--") && a.includes("=") ? a.split(/=(.*)/s, 2) : [a]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--runs") o.runs = Math.max(1, Number(args[++i]) | 0);
    else if (a === "--only") o.only = new Set(args[++i].split(","));
    else if (a === "--no-profile") o.profile = false;
    else throw new Error(`Cannot run the workloads benchmark: unknown argument '${a}'`);
  }
  return o;
}

/** One timed run of `w` on a fresh mount of `who` (seconds). */
async function measureOnce(
  w: Workload,
  who: Contender,
  container: string,
  native: string,
  mp: string,
  log?: { text: string },
): Promise<number> {
  if (w.prepare) await sh(w.prepare(native));
  await dropCaches();
  const m = await mountContender(who, container, native, mp, log ? ["--debug"] : [], log);
  try {
    if (w.before) {
      await sh(w.before(m.root));
      await dropCaches();
    }
    if (w.again) await sh(w.script(m.root));
    // The trace counts the timed run only (what came before is through by now).
    if (log !== undefined && (w.before || w.again)) {
      await new Promise((r) => setTimeout(r, 200));
      log.text = "";
    }
    return await timed(w.script(m.root));
  } finally {
    await m.unmount();
  }
}

/** Counts of `rx N OPCODE` (the kernel's requests) and `rpc N method` (satellite calls). */
export function tally(trace: string): { kernel: Map<string, number>; rpc: Map<string, number> } {
  const kernel = new Map<string, number>();
  const rpc = new Map<string, number>();
  for (const m of trace.matchAll(/ debug (rx|rpc) \d+ (\w+)/g)) {
    const into = m[1] === "rx" ? kernel : rpc;
    into.set(m[2], (into.get(m[2]) ?? 0) + 1);
  }
  return { kernel, rpc };
}

function seconds(x: number | null): string {
  return x === null ? "–" : x.toFixed(3);
}

function ratio(a: number | null, b: number | null): string {
  return a === null || b === null || b === 0 ? "–" : (a / b).toFixed(2);
}

function summary(counts: Map<string, number>): string {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8)
    .map(([k, v]) => `${k} ${v}`).join(", ");
  return `${total}${top ? ` (${top})` : ""}`;
}

async function main(args: string[]): Promise<number> {
  const opts = parseArgs(args);
  if (Deno.uid() !== 0) {
    console.error("Cannot run the workloads benchmark: needs root (drop_caches, mounts)");
    return 1;
  }
  for (const tool of ["git", "gcc", "make", "vim", "npm"]) {
    if ((await run("sh", ["-c", `command -v ${tool}`])).code !== 0) {
      console.error(`Cannot run the workloads benchmark: '${tool}' is not installed`);
      return 1;
    }
  }
  await ensureHostTools();
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const container = await startTestContainer(bed, "glibc");
  const mp = await Deno.makeTempDir({ prefix: "dockerfuse-bench-work-" });
  const rows: { w: Workload; medians: Record<Contender, number | null> }[] = [];
  const profiles: string[] = [];
  try {
    const native = await nativeRoot(container);
    await sh(`mkdir -p ${native}/usr/lib/openssh && cp ${SFTP_SERVER} ${native}${SFTP_SERVER}`);
    await sh(repoSetup(native));
    const files = (await run("sh", ["-c", `find ${native}/work/repo | wc -l`])).stdout.trim();
    console.error(`repository: ${files} entries (node_modules of this project, 21 commits)`);
    for (const w of WORKLOADS) {
      if (opts.only && !opts.only.has(w.id)) continue;
      const samples = new Map<Contender, number[]>(CONTENDERS.map((c) => [c, []]));
      const failed = new Map<Contender, string>();
      // Runs interleave the contenders, so a change in the machine's load hits them alike.
      for (let i = 0; i < opts.runs; i++) {
        for (const c of CONTENDERS) {
          if (failed.has(c)) continue;
          try {
            samples.get(c)!.push(await measureOnce(w, c, container, native, mp));
          } catch (error) {
            // A contender that cannot run it (sshfs: readlink of relative links fails with
            // EPERM through sftp-server) gets no figure, with the reason printed.
            failed.set(c, (error as Error).message.split("\n").slice(-3).join(" ").slice(-300));
          }
        }
      }
      const medians = {} as Record<Contender, number | null>;
      for (const c of CONTENDERS) {
        const xs = samples.get(c)!;
        medians[c] = xs.length > 0 ? median(xs) : null;
        const shown = failed.has(c)
          ? `failed: ${failed.get(c)}`
          : xs.map((s) => s.toFixed(3)).join(" ");
        console.error(`${w.id.padEnd(11)} ${c.padEnd(10)} ${shown}`);
      }
      rows.push({ w, medians });
      if (opts.profile) {
        const log = { text: "" };
        await measureOnce(w, "dockerfuse", container, native, mp, log);
        const { kernel, rpc } = tally(log.text);
        profiles.push(
          `- ${w.label}: kernel requests ${summary(kernel)}; satellite calls ${summary(rpc)}`,
        );
      }
    }
  } finally {
    await unmountPath(mp);
    await Deno.remove(mp, { recursive: true }).catch(() => {});
    await removeTestContainer(bed, container);
  }
  const lines = [
    "| workload | dockerfuse s | sshfs s | native s | dockerfuse/sshfs | dockerfuse/native |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map(({ w, medians: m }) =>
      `| ${w.label} | ${seconds(m.dockerfuse)} | ${seconds(m.sshfs)} | ${seconds(m.native)} | ${
        ratio(m.dockerfuse, m.sshfs)
      } | ${ratio(m.dockerfuse, m.native)} |`
    ),
  ];
  console.log(lines.join("\n"));
  if (profiles.length > 0) {
    console.log("\nwhere dockerfuse's requests go (one --debug run each):");
    console.log(profiles.join("\n"));
  }
  console.log(`\nmedian of ${opts.runs} runs, cold mounts, page cache dropped`);
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
