/**
 * `dockerfuse mount` and `dockerfuse unmount`: the CLI side of a container mount's lifecycle
 * (src/mount), with signals and exit codes.
 *
 * @module
 */

import type { Logger } from "../fuse/mod.ts";
import { inspectMountpoint, unmount } from "../fuse/mountpoint.ts";
import {
  type ContainerMountDeps,
  type ContainerMountOptions,
  mountContainer,
} from "../mount/mod.ts";
import { CliError, ExitCode } from "./exit_codes.ts";
import { type ServeDeps, serveMount } from "./serve.ts";

/** What `runMount` needs from its surroundings (injected for tests). */
export interface MountDeps extends ContainerMountDeps, ServeDeps {}

/** Mounts per `options` and serves until a signal or the end; returns the exit code. */
export function runMount(options: ContainerMountOptions, deps: MountDeps): Promise<ExitCode> {
  return serveMount(
    options.mountpoint,
    () => mountContainer(options, deps),
    deps,
    (ending) => ending.kind === "lost" ? ending.reason : undefined,
  );
}

/** `dockerfuse unmount`: unmounts (lazily if busy), also a stale mount. */
export async function runUnmount(mountpoint: string, logger: Logger): Promise<ExitCode> {
  const state = await inspectMountpoint(mountpoint).catch((error) => {
    throw new CliError(ExitCode.MountFailed, (error as Error).message);
  });
  if (state !== "mounted" && state !== "stale") {
    throw new CliError(ExitCode.MountFailed, `Cannot unmount '${mountpoint}': not mounted`);
  }
  try {
    await unmount(mountpoint, { lazy: state === "stale" });
  } catch (error) {
    logger.warn(`${(error as Error).message}; unmounting lazily`);
    await unmount(mountpoint, { lazy: true }).catch((lazyError) => {
      throw new CliError(ExitCode.MountFailed, (lazyError as Error).message);
    });
  }
  logger.info(`Unmounted '${mountpoint}'${state === "stale" ? " (it was stale)" : ""}`);
  return ExitCode.Ok;
}
