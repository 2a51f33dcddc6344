/**
 * Engine-mount harness: `dockerfuse engine` as a child process on a fresh mountpoint, and the
 * probes the tests use (satellites running per container, helper containers left).
 *
 * @module
 */

import { cliRunArgs } from "../../src/cli/launch.ts";
import { watchChild } from "../e2e/child.ts";
import { docker, isMounted } from "../e2e/harness.ts";

export { docker, isMounted, readInside, sh } from "../e2e/harness.ts";

/** The label of the tree's helper containers (src/tree/mod.ts HELPER_LABEL). */
export const HELPER_LABEL = "dev.dockerfuse.helper";

/** A running `dockerfuse engine`. */
export interface EngineRun {
  readonly mountpoint: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  /** Everything the client printed on stderr so far. */
  stderr(): string;
  /** Sends `signal` and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Kills what still runs, unmounts, removes the mountpoint (not the helpers: tests check). */
  cleanup(): Promise<void>;
}

/** Polls `check` until it is true; throws with `what` after `ms`. Returns the ms it took. */
export async function until(
  what: string,
  check: () => Promise<boolean> | boolean,
  ms = 30_000,
): Promise<number> {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Math.round(performance.now() - start);
}

/** Starts `dockerfuse engine [args] MOUNTPOINT`; resolves once the mount answers. */
export async function startEngine(
  args: string[] = [],
  mountpoint?: string,
  env?: Record<string, string>,
): Promise<EngineRun> {
  const where = mountpoint ?? await Deno.makeTempDir({ prefix: "dockerfuse-tree-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(["engine", ...args, where]),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env,
  }).spawn();
  const watched = watchChild(child);
  const run: EngineRun = {
    mountpoint: where,
    child,
    pid: child.pid,
    stderr: watched.stderr,
    stop: (signal: Deno.Signal = "SIGTERM") => watched.stop(signal),
    async cleanup() {
      await watched.kill();
      if (await isMounted(where)) {
        await new Deno.Command("umount", { args: ["-l", where] }).output();
      }
      if (mountpoint === undefined) await Deno.remove(where, { recursive: true }).catch(() => {});
    },
  };
  try {
    await until(
      "the engine mount",
      async () => {
        if (watched.exited()) throw new Error(`dockerfuse engine exited:\n${watched.stderr()}`);
        return watched.stderr().includes("Mounted the engine") && await isMounted(where);
      },
      120_000,
    );
  } catch (error) {
    await run.cleanup();
    throw error;
  }
  return run;
}

/** Ids of containers (stopped ones too) carrying the helper label (on `host`, else the default). */
export async function helperContainers(host?: string): Promise<string[]> {
  const r = await docker([
    ...(host ? ["-H", host] : []),
    "ps",
    "-aq",
    "--no-trunc",
    "--filter",
    `label=${HELPER_LABEL}`,
  ]);
  return r.stdout.split("\n").filter((l) => l !== "");
}

/** Ids of images (untagged ones too) carrying the helper label (snapshots). */
export async function helperImages(): Promise<string[]> {
  const r = await docker(["images", "-aq", "--no-trunc", "--filter", `label=${HELPER_LABEL}`]);
  return r.stdout.split("\n").filter((l) => l !== "");
}

/** Containers whose processes run a satellite now (from /proc: independent of the client). */
export async function containersRunningSatellites(ids: Set<string>): Promise<Set<string>> {
  const found = new Set<string>();
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmdline = await Deno.readTextFile(`/proc/${e.name}/cmdline`);
      if (!cmdline.includes("satellite.js")) continue;
      const cgroup = await Deno.readTextFile(`/proc/${e.name}/cgroup`);
      const id = /docker[/-]([0-9a-f]{64})/.exec(cgroup)?.[1];
      if (id !== undefined && ids.has(id)) found.add(id);
    } catch {
      // the process ended meanwhile
    }
  }
  return found;
}

/** `docker inspect` of a container's full id. */
export async function fullId(nameOrId: string): Promise<string> {
  return (await docker(["inspect", "-f", "{{.Id}}", nameOrId])).stdout.trim();
}
