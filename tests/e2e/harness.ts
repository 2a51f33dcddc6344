/**
 * End-to-end harness: a test container from the bed, and `dockerfuse mount` running as a child
 * process on a fresh mountpoint, exactly as a user runs it.
 *
 * @module
 */

import { cliRunArgs } from "../../src/cli/launch.ts";
import { watchChild } from "./child.ts";
import {
  type BedKind,
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";

const decoder = new TextDecoder();

/** A running `dockerfuse mount` and its container. */
export interface E2EMount {
  readonly bed: TestBed;
  readonly kind: BedKind;
  readonly container: string;
  readonly mountpoint: string;
  readonly child: Deno.ChildProcess;
  /** Everything the client printed on stderr so far. */
  stderr(): string;
  /** Sends `signal` and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Stops whatever is still running, removes the container and the mountpoint. */
  cleanup(): Promise<void>;
}

/** True while `path` is listed in /proc/self/mountinfo. */
export async function isMounted(path: string): Promise<boolean> {
  const text = await Deno.readTextFile("/proc/self/mountinfo");
  return text.split("\n").some((line) => line.split(" ")[4] === path);
}

/** Runs the dockerfuse CLI to completion. */
export async function dockerfuse(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(args),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Runs `docker …` and returns its output; throws on failure unless `check` is false. */
export async function docker(
  args: string[],
  check = true,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("docker", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const r = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (check && r.code !== 0) throw new Error(`docker ${args.join(" ")} failed: ${r.stderr}`);
  return r;
}

/** Options of {@link startMount}. */
export interface StartMountOptions {
  /** Extra `dockerfuse mount` arguments before CONTAINER MOUNTPOINT. */
  args?: string[];
  /** Replace the whole argument list; {container} and {mountpoint} are substituted. */
  argv?: string[];
  /** Use this container instead of starting one. */
  container?: string;
  mountpoint?: string;
  env?: Record<string, string>;
}

/** Starts a container of `kind` and mounts it; resolves once the mount answers. */
export async function startMount(
  kind: BedKind,
  options: StartMountOptions = {},
): Promise<E2EMount> {
  const bed = await ensureTestBed({ kinds: [kind] });
  const container = options.container ?? await startTestContainer(bed, kind);
  const mountpoint = options.mountpoint ?? await Deno.makeTempDir({ prefix: "dockerfuse-e2e-" });
  const argv =
    options.argv?.map((a) =>
      a.replace("{container}", container).replace("{mountpoint}", mountpoint)
    ) ??
      ["mount", ...(options.args ?? []), container, mountpoint];
  const child = new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(argv),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).spawn();
  const watched = watchChild(child);
  const mount: E2EMount = {
    bed,
    kind,
    container,
    mountpoint,
    child,
    stderr: watched.stderr,
    stop: (signal: Deno.Signal = "SIGTERM") => watched.stop(signal),
    async cleanup() {
      await watched.kill();
      if (await isMounted(mountpoint)) {
        await new Deno.Command("umount", { args: ["-l", mountpoint] }).output();
      }
      if (!options.container) await removeTestContainer(bed, container);
      if (!options.mountpoint) await Deno.remove(mountpoint, { recursive: true }).catch(() => {});
    },
  };
  const deadline = Date.now() + 120_000;
  // Ready once the client says so (a stale mount may be listed at the same place before).
  while (!watched.stderr().includes(" Mounted '") || !(await isMounted(mountpoint))) {
    if (watched.exited() || Date.now() > deadline) {
      await mount.cleanup();
      throw new Error(
        `dockerfuse did not mount ${kind} container ${container} (${
          watched.exited() ? "it exited" : "timeout"
        }):\n${watched.stderr()}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return mount;
}

/** Runs `sh -c script` on the host with $M set to the mountpoint. */
export async function sh(
  mountpoint: string,
  script: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    env: { M: mountpoint },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Reads a file from inside the container without a shell (docker cp to stdout is a tar). */
export async function readInside(container: string, path: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-cp-" });
  try {
    await docker(["cp", `${container}:${path}`, `${dir}/out`]);
    return await Deno.readTextFile(`${dir}/out`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Successful RPCs of `method` a `--debug` mount logged in `stderr`, from character `from` on. */
export function loggedRpcs(stderr: string, method: string, from = 0): number {
  return stderr.slice(from).split("\n").filter((l) =>
    /debug rpc \d+ /.test(l) && l.includes(` ${method} ok`)
  ).length;
}

/** Runs `fn` on a fresh mount of `kind`; the mount and container go away whatever happens. */
export async function withMount(
  kind: BedKind,
  fn: (m: E2EMount) => Promise<void>,
  options: Parameters<typeof startMount>[1] = {},
): Promise<void> {
  const m = await startMount(kind, options);
  try {
    await fn(m);
  } catch (error) {
    // What the mount logged goes with the failure (an errno from nowhere says where it came from).
    const tail = m.stderr().trimEnd().split("\n").slice(-MOUNT_LOG_LINES).join("\n");
    if (error instanceof Error && tail !== "") {
      error.message += `\n--- the mount's last ${MOUNT_LOG_LINES} log lines ---\n${tail}`;
    }
    throw error;
  } finally {
    await m.cleanup();
  }
}

/** Lines of a mount's log a failed test shows. */
const MOUNT_LOG_LINES = 40;
