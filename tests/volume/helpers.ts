/**
 * Helpers of the pseudo-volume tests: the volume plugin as a child process, mount checks.
 *
 * @module
 */

import { cliRunArgs } from "../../src/cli/launch.ts";
import { watchChild } from "../e2e/child.ts";

export { docker, isMounted } from "../e2e/harness.ts";

/** A random suffix for names of plugins, volumes and containers of one test. */
export function uniqueSuffix(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** Mount points listed in /proc/mounts at or below `dir`. */
export async function mountsBelow(dir: string): Promise<string[]> {
  return (await Deno.readTextFile("/proc/mounts")).split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((p) => p === dir || p.startsWith(dir + "/"));
}

/** Lazily unmounts everything at or below `dir` (cleanup after a failed test). */
export async function unmountAllBelow(dir: string): Promise<void> {
  const mounts = (await mountsBelow(dir)).sort((a, b) => b.length - a.length);
  for (const p of mounts) await new Deno.Command("umount", { args: ["-l", p] }).output();
}

/** Polls `check` every 100 ms until it is true; throws after `ms`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The driver name of the tests' plugin. One fixed name: dockerd remembers every legacy plugin
 * it ever activated and keeps asking it (with 30 s of retries) for `docker volume ls` and for
 * volume names it does not know, so each new name would slow the engine down for good.
 */
export const TEST_DRIVER = "dockerfuse-test";

/** Serializes the plugin tests of concurrent test runs on this host (one socket name). */
export async function lockPluginTests(): Promise<{ release(): void }> {
  await Deno.mkdir("/run/lock", { recursive: true });
  const file = await Deno.open("/run/lock/dockerfuse-volume-tests.lock", {
    create: true,
    write: true,
  });
  await file.lock(true);
  return { release: () => file.close() };
}

/** A running `dockerfuse volume-plugin`. */
export interface PluginProcess {
  readonly socket: string;
  stderr(): string;
  /** SIGTERM and the exit code (SIGKILL after 20 s). */
  stop(): Promise<number>;
  /** SIGKILL if still running. */
  kill(): Promise<void>;
}

/** Starts the plugin on /run/docker/plugins/<driver>.sock; resolves once it serves. */
export async function startPlugin(driver: string, stateDir: string): Promise<PluginProcess> {
  const socket = `/run/docker/plugins/${driver}.sock`;
  const child = new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(["volume-plugin", "--socket", socket, "--state-dir", stateDir]),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const watched = watchChild(child);
  const plugin: PluginProcess = {
    socket,
    stderr: watched.stderr,
    stop: () => watched.stop("SIGTERM", 20_000),
    kill: () => watched.stop("SIGKILL").then(() => {}),
  };
  try {
    await waitFor("the plugin to serve", () => {
      if (watched.exited()) throw new Error(`the plugin exited:\n${watched.stderr()}`);
      return Promise.resolve(watched.stderr().includes(" serving on "));
    }, 60_000);
  } catch (error) {
    await plugin.kill();
    throw error;
  }
  return plugin;
}
