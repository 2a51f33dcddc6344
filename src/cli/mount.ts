/**
 * `dockerfuse mount` and `dockerfuse unmount`: the CLI side of a container mount's lifecycle
 * (src/mount), with signals and exit codes.
 *
 * @module
 */

import { inspectMountpoint, type Logger, unmount } from "../fuse/mod.ts";
import {
  type ContainerMountDeps,
  type ContainerMountOptions,
  mountContainer,
  MountError,
  type MountErrorKind,
} from "../mount/mod.ts";
import { CliError, ExitCode } from "./exit_codes.ts";

/** What `runMount` needs from its surroundings (injected for tests). */
export interface MountDeps extends ContainerMountDeps {
  /** Aborted when the user asks to stop (SIGINT/SIGTERM). */
  stop: AbortSignal;
  /** Called once the mount answers requests. */
  onReady?: (mountpoint: string) => void;
}

const EXIT_FOR: Readonly<Record<MountErrorKind, ExitCode>> = {
  engine: ExitCode.EngineUnreachable,
  container: ExitCode.ContainerUnavailable,
  architecture: ExitCode.UnsupportedArchitecture,
  mountpoint: ExitCode.MountFailed,
  satellite: ExitCode.SatelliteFailed,
};

/** Mounts per `options` and serves until a signal or the end; returns the exit code. */
export async function runMount(
  options: ContainerMountOptions,
  deps: MountDeps,
): Promise<ExitCode> {
  let mounted;
  try {
    mounted = await mountContainer(options, deps);
  } catch (error) {
    if (error instanceof MountError) throw new CliError(EXIT_FOR[error.kind], error.message);
    throw error;
  }
  deps.onReady?.(options.mountpoint);
  const stopped = new Promise<"signal">((resolve) => {
    if (deps.stop.aborted) resolve("signal");
    deps.stop.addEventListener("abort", () => resolve("signal"), { once: true });
  });
  const first = await Promise.race([stopped, mounted.ended]);
  if (first === "signal") {
    deps.logger.info(`Unmounting '${options.mountpoint}'`);
    await mounted.close();
    return ExitCode.Ok;
  }
  if (first.kind === "lost") {
    throw new CliError(
      ExitCode.ConnectionLost,
      `Unmounted '${options.mountpoint}': ${first.reason}`,
    );
  }
  deps.logger.info(`'${options.mountpoint}' was unmounted`);
  return ExitCode.Ok;
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
