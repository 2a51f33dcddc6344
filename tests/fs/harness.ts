/**
 * Test harness: the container filesystem mounted for real, served by a satellite started from
 * source against a host directory (no Docker). Client-side file operations must go through
 * async APIs or child processes: this process serves the mount.
 *
 * @module
 */

import { ContainerFs } from "../../src/fs/mod.ts";
import { type FuseSession, type Logger, mount } from "../../src/fuse/mod.ts";
import type { RpcCalls } from "../../src/protocol/mod.ts";
import { type Harness, startSatellite } from "../satellite/harness.ts";

/** A mounted container filesystem over a local satellite. */
export interface MountedFs {
  /** Directory the satellite serves (the "container side"). */
  readonly backing: string;
  /** Where it is mounted. */
  readonly mountpoint: string;
  readonly session: FuseSession;
  readonly satellite: Harness;
  /** Every call the filesystem made to the satellite, with its params, in order. */
  readonly rpcCalls: readonly RpcCall[];
  /** Unmounts, stops the satellite, removes both directories. */
  close(): Promise<void>;
}

/** One call of the filesystem to the satellite. */
export interface RpcCall {
  readonly method: string;
  readonly params: Record<string, unknown>;
}

/** `calls` with every call recorded into `into` as it is made. */
function recorded(calls: RpcCalls, into: RpcCall[]): RpcCalls {
  return new Proxy(calls, {
    get(target, method: string) {
      const call = target[method as keyof RpcCalls] as (...args: unknown[]) => unknown;
      if (typeof call !== "function") return call; // e.g. "then": not a thenable
      return (params: Record<string, unknown>, options?: unknown) => {
        into.push({ method, params });
        return call(params, options);
      };
    },
  });
}

const quiet: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (m) => console.error(m),
};

/** Mounts a fresh backing directory through satellite → RPC → ContainerFs → FUSE. */
export async function mountLocal(
  options: {
    attrTimeout?: number;
    entryTimeout?: number;
    readOnly?: boolean;
    writebackCache?: boolean;
    writeBehind?: boolean;
    /** Extra satellite arguments (`--node-budget N`). */
    satelliteArgs?: string[];
  } = {},
): Promise<MountedFs> {
  const backing = await Deno.makeTempDir({ prefix: "dockerfuse-backing-" });
  const mountpoint = await Deno.makeTempDir({ prefix: "dockerfuse-mnt-" });
  await Deno.chmod(backing, 0o755);
  const satellite = startSatellite(backing, { args: options.satelliteArgs });
  await satellite.client.ready;
  const attrTimeout = options.attrTimeout ?? 1;
  const entryTimeout = options.entryTimeout ?? 1;
  const rpcCalls: RpcCall[] = [];
  const fs = new ContainerFs(recorded(satellite.client.call, rpcCalls), {
    attrTimeout,
    entryTimeout,
    hostArch: Deno.build.arch,
    writebackCache: options.writebackCache,
    writeBehind: options.writeBehind,
    logger: quiet,
  });
  const session = await mount(fs, mountpoint, {
    fsName: "dockerfuse:test",
    subtype: "dockerfuse",
    attrTimeout,
    entryTimeout,
    readOnly: options.readOnly,
    writebackCache: options.writebackCache,
    allowOther: true, // tests act as other users too
    logger: quiet,
  });
  return {
    backing,
    mountpoint,
    session,
    satellite,
    rpcCalls,
    async close() {
      await session.unmount({ lazy: true });
      await satellite.stop();
      await Deno.remove(mountpoint, { recursive: true }).catch(() => {});
      await Deno.remove(backing, { recursive: true });
    },
  };
}

/** Runs `sh -c script` (with $M = mountpoint, $B = backing dir) and returns its stdout. */
export async function sh(
  fs: MountedFs,
  script: string,
  options: { user?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = options.user === undefined
    ? ["-c", script]
    : [`--reuid=${options.user}`, `--regid=${options.user}`, "--clear-groups", "sh", "-c", script];
  const out = await new Deno.Command(options.user === undefined ? "sh" : "setpriv", {
    args,
    env: { M: fs.mountpoint, B: fs.backing },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}
