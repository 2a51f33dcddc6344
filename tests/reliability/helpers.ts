/**
 * Shared pieces of the reliability tests: a mount that always cleans up, waiting for the client
 * to exit within a bound, the satellite's pid, process and mount checks, a seeded PRNG.
 *
 * @module
 */

import { cliRunArgs } from "../../src/cli/launch.ts";
import { ok } from "node:assert/strict";
import { docker, type E2EMount, isMounted } from "../e2e/harness.ts";

export {
  docker,
  dockerfuse,
  isMounted,
  readInside,
  sh,
  startMount,
  withMount,
} from "../e2e/harness.ts";
export type { E2EMount } from "../e2e/harness.ts";

/** Runs the dockerfuse CLI to completion with extra environment variables. */
export async function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(args),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** True when DOCKERFUSE_LONG=1 asks for the long local runs. */
export const LONG = Deno.env.get("DOCKERFUSE_LONG") === "1";

/** Waits for the client to exit by itself; fails (after killing it) if it takes over `ms`. */
export async function exitWithin(m: E2EMount, ms: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) =>
    timer = setTimeout(() => resolve("timeout"), ms)
  );
  const result = await Promise.race([m.child.status.then((s) => s.code), timeout]);
  clearTimeout(timer);
  if (result === "timeout") {
    throw new Error(`the client did not exit within ${ms / 1000} s:\n${m.stderr()}`);
  }
  return await m.stop("SIGCONT"); // already exited: collects the code and the rest of stderr
}

/** The satellite's pid inside the container, from the client's "Satellite ready … pid N" line. */
export function satellitePid(m: E2EMount): number {
  const match = /Satellite ready .*pid (\d+)/.exec(m.stderr());
  if (!match) throw new Error(`no "Satellite ready" line in:\n${m.stderr()}`);
  return Number(match[1]);
}

/** Command lines of the processes of `container` (host view). */
export async function containerCommands(container: string): Promise<string[]> {
  // docker top needs the pid column; a container that is not running has no processes.
  const r = await docker(["top", container, "-o", "pid,args"], false);
  if (r.code !== 0) {
    if (/is not running|No such container/i.test(r.stderr)) return [];
    throw new Error(`docker top ${container} failed: ${r.stderr}`);
  }
  return r.stdout.split("\n").slice(1).filter((l) => l.trim() !== "")
    .map((l) => l.trim().replace(/^\d+\s+/, ""));
}

/** Every descendant pid of `pid` on the host, from /proc/<n>/stat. */
export async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${entry.name}/stat`).catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields.length > 1) parents.set(Number(entry.name), Number(fields[1]));
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [child, parent] of parents) {
      if (parent === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** True while a process `pid` exists (and is not a zombie). */
export async function alive(pid: number): Promise<boolean> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  return status !== "" && !/^State:\s+Z/m.test(status);
}

/** VmRSS of `pid` in bytes (0 when gone). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Asserts the mountpoint is neither mounted nor stale, and usable as a plain directory. */
export async function assertNoStaleMount(mountpoint: string): Promise<void> {
  ok(!(await isMounted(mountpoint)), `'${mountpoint}' is still mounted`);
  await Deno.stat(mountpoint); // ENOTCONN here would mean a dead mount
}

/** Runs `sh -c script` and fails the test if it does not end within `ms` (the shell is killed). */
export async function shWithin(
  mountpoint: string,
  script: string,
  ms: number,
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  const child = new Deno.Command("sh", {
    args: ["-c", script],
    env: { M: mountpoint },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, ms);
  const out = await child.output();
  clearTimeout(timer);
  const elapsed = performance.now() - started;
  const decoder = new TextDecoder();
  if (out.signal === "SIGKILL") {
    throw new Error(`'${script}' was still hanging after ${ms / 1000} s`);
  }
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    ms: elapsed,
  };
}

/** A small seeded PRNG (mulberry32), so failures can be replayed from the printed seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
