/**
 * pjdfstest, the POSIX filesystem conformance suite, built from `../shared/pjdfstest` (read-only
 * in CI) in a scratch copy and run with `prove` from a directory inside a filesystem.
 *
 * Used by the `posix` test group (through a dockerfuse mount) and by `deno task posix` (repeated
 * runs, or any directory, e.g. the container's own filesystem for comparison).
 *
 * @module
 */

import { concatBytes } from "../../src/docker/bytes.ts";
import { Apt, cacheDir, exists, log, removeTree, run, sha256Hex } from "../testbed/system.ts";

/**
 * Where the suite's sources are: `$PJDFSTEST_SRC`, else `../shared/pjdfstest` beside the
 * checkout, or, in a git worktree, beside its main checkout.
 */
export function pjdfstestSource(): string {
  const fromEnv = Deno.env.get("PJDFSTEST_SRC");
  if (fromEnv) return fromEnv;
  const checkout = new URL("../../", import.meta.url).pathname.replace(/\/+$/, "");
  const beside = `${checkout.replace(/\/[^/]*$/, "")}/shared/pjdfstest`;
  if (existsSync(`${beside}/pjdfstest.c`)) return beside;
  const git = new Deno.Command("git", {
    args: ["rev-parse", "--path-format=absolute", "--git-common-dir"],
    cwd: checkout,
    stdout: "piped",
    stderr: "null",
  });
  try {
    const out = git.outputSync();
    const common = new TextDecoder().decode(out.stdout).trim(); // <main checkout>/.git
    if (out.success && common.endsWith("/.git")) {
      const main = common.slice(0, -"/.git".length);
      return `${main.replace(/\/[^/]*$/, "")}/shared/pjdfstest`;
    }
  } catch {
    // no git: the checkout's own neighbour it is
  }
  return beside;
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Tools the build and the run need (Debian package per command). */
const TOOLS: ReadonlyArray<[command: string, pkg: string]> = [
  ["autoreconf", "autoconf"],
  ["automake", "automake"],
  ["gcc", "gcc"],
  ["make", "make"],
  ["prove", "perl"],
];

async function sourceHash(dir: string): Promise<string> {
  const parts: string[] = [];
  const walk = async (path: string, rel: string): Promise<void> => {
    const entries = [];
    for await (const e of Deno.readDir(path)) entries.push(e);
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const e of entries) {
      if (e.isDirectory) await walk(`${path}/${e.name}`, `${rel}/${e.name}`);
      else if (e.isFile) {
        const st = await Deno.stat(`${path}/${e.name}`);
        parts.push(`${rel}/${e.name}:${st.size}:${st.mtime?.getTime()}`);
      }
    }
  };
  await walk(dir, "");
  return (await sha256Hex(parts.join("\n"))).slice(0, 12);
}

/** A built copy of the suite: the `pjdfstest` binary beside its `tests/` folder. */
export interface PjdfsTest {
  readonly dir: string;
  readonly testsDir: string;
}

/**
 * Builds the suite once per source version into the test bed's cache (a scratch copy: the
 * source may be read-only) and returns where it is. Installs missing build tools with apt.
 */
export async function buildPjdfstest(): Promise<PjdfsTest> {
  const src = pjdfstestSource();
  if (!(await exists(`${src}/pjdfstest.c`))) {
    throw new Error(
      `Cannot build pjdfstest: no sources at '${src}' (expected ../shared/pjdfstest beside the ` +
        "checkout, or PJDFSTEST_SRC)",
    );
  }
  const dir = `${cacheDir()}/pjdfstest-${await sourceHash(src)}`;
  const result = { dir, testsDir: `${dir}/tests` };
  if (await exists(`${dir}/pjdfstest`)) return result;

  const apt = new Apt();
  const missing: string[] = [];
  for (const [command, pkg] of TOOLS) {
    if ((await run("sh", ["-c", `command -v ${command}`], { check: false })).code !== 0) {
      missing.push(pkg);
    }
  }
  await apt.install([...new Set(missing)]);

  log(`building pjdfstest in ${dir}`);
  const tmp = `${dir}.building`;
  await removeTree(tmp);
  await run("cp", ["-r", src, tmp]);
  await run("chmod", ["-R", "u+w", tmp]);
  await run("autoreconf", ["-ifs"], { cwd: tmp });
  await run("./configure", [], { cwd: tmp });
  await run("make", ["pjdfstest"], { cwd: tmp });
  await removeTree(dir);
  await Deno.rename(tmp, dir);
  return result;
}

/** The outcome of one file of the suite. */
export interface FileResult {
  /** Path relative to the tests folder, e.g. "rename/02.t". */
  readonly file: string;
  readonly tests: number;
  readonly failed: number;
  /** The failed subtests as prove lists them ("2-3, 7"), or the wait status when it died. */
  readonly detail: string;
}

/** What one run of the suite gave. */
export interface PosixRun {
  readonly files: number;
  readonly tests: number;
  readonly failed: number;
  readonly failures: readonly FileResult[];
  /** prove's verdict (`Result: PASS`), false when it said FAIL or nothing. */
  readonly passed: boolean;
  readonly seconds: number;
  readonly output: string;
}

/**
 * Parses prove's summary: `Files=238, Tests=8798, …` and, per failing file,
 * `PATH (Wstat: W Tests: T Failed: F)` followed by `Failed tests:  LIST` lines.
 * A file that died (non-zero Wstat) with no failed subtests counts as one failure.
 */
export function parseProve(output: string, testsDir: string): Omit<PosixRun, "seconds"> {
  const totals = /^Files=(\d+), Tests=(\d+),/m.exec(output);
  const failures: FileResult[] = [];
  const lines = output.split("\n");
  const head = /^(\S+\.t)\s+\(Wstat: (\d+) Tests: (\d+) Failed: (\d+)\)/;
  for (let i = 0; i < lines.length; i++) {
    const m = head.exec(lines[i]);
    if (!m) continue;
    const wstat = Number(m[2]);
    let failed = Number(m[4]);
    const details: string[] = [];
    while (i + 1 < lines.length && /^\s+\S/.test(lines[i + 1]) && !head.test(lines[i + 1])) {
      const line = lines[++i].trim();
      const listed = /^Failed tests?:\s+(.*)$/.exec(line);
      if (listed) details.push(listed[1]);
      else if (/^\d/.test(line) && details.length > 0) details.push(line);
      else if (/^(Non-zero|Parse errors)/.test(line)) details.push(line);
    }
    if (failed === 0 && wstat !== 0) failed = 1;
    if (failed === 0) continue; // "TODO passed" only
    const file = m[1].startsWith(`${testsDir}/`) ? m[1].slice(testsDir.length + 1) : m[1];
    failures.push({ file, tests: Number(m[3]), failed, detail: details.join(" ") });
  }
  return {
    files: totals ? Number(totals[1]) : 0,
    tests: totals ? Number(totals[2]) : 0,
    failed: failures.reduce((n, f) => n + f.failed, 0),
    failures,
    passed: /^Result: PASS$/m.test(output),
    output,
  };
}

/** How long one run may take: the slowest seen took 5.5 min; a run past this is stuck. */
export const RUN_DEADLINE_MS = 15 * 60_000;

/**
 * Runs the whole suite as root from `workDir` (a directory inside the filesystem under test;
 * tests switch uids, so a FUSE mount needs allow_other). prove runs in a session of its own: past
 * `deadlineMs` the processes still there are listed (what each waits in) and killed, and this
 * throws without waiting for them (one blocked in a FUSE request ends when the mount's server does).
 */
export async function runPjdfstest(
  suite: PjdfsTest,
  workDir: string,
  options: { jobs?: number; files?: string[]; deadlineMs?: number } = {},
): Promise<PosixRun> {
  const started = performance.now();
  const targets = options.files?.map((f) => `${suite.testsDir}/${f}`) ?? [suite.testsDir];
  // Verbose: the "not ok" lines say what a failing subtest tried and got (see describeFailures).
  const child = new Deno.Command("setsid", {
    args: ["prove", "-r", "-v", `-j${options.jobs ?? 2}`, ...targets],
    cwd: workDir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = collect(child.stdout), err = collect(child.stderr);
  const deadlineMs = options.deadlineMs ?? RUN_DEADLINE_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), deadlineMs));
  const status = await Promise.race([child.status, late]);
  clearTimeout(timer);
  if (status === "late") {
    const left = await run("ps", ["-s", String(child.pid), "-o", "pid,stat,etime,wchan:28,args"], {
      check: false,
    });
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch { /* gone meanwhile */ }
    out.stop();
    err.stop();
    const tail = out.text().split("\n").slice(-15).join("\n");
    throw new Error(
      `Cannot run pjdfstest in '${workDir}': not finished after ${deadlineMs / 1000} s\n` +
        `processes left (killed):\n${left.stdout.trim()}\nlast output:\n${tail}`,
    );
  }
  await Promise.all([out.done, err.done]);
  const parsed = parseProve(`${out.text()}\n${err.text()}`, suite.testsDir);
  if (parsed.tests === 0) {
    throw new Error(
      `Cannot run pjdfstest in '${workDir}': prove printed no summary (exit ${status.code})\n` +
        (err.text() || out.text()).split("\n").slice(-20).join("\n"),
    );
  }
  return { ...parsed, seconds: (performance.now() - started) / 1000 };
}

/** Reads a stream to its end in the background; `stop` gives up on the rest. */
function collect(stream: ReadableStream<Uint8Array>): {
  done: Promise<void>;
  text(): string;
  stop(): void;
} {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  const done = (async () => {
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (r.done || r.value === undefined) return;
      chunks.push(r.value);
    }
  })();
  return {
    done,
    text: () => new TextDecoder().decode(concatBytes(chunks)),
    stop: () => void reader.cancel().catch(() => {}),
  };
}

/** One line per failing file, then what the first failing subtests tried and got. */
export function describeFailures(run: Omit<PosixRun, "seconds">): string {
  const files = run.failures.map((f) => `  ${f.file}: ${f.failed}/${f.tests} failed (${f.detail})`);
  const notOk = run.output.split("\n").filter((l) => /^\s*not ok /.test(l)).slice(0, 10);
  return [...files, ...notOk.map((l) => `    ${l.trim()}`)].join("\n");
}
