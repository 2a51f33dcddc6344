/**
 * What `dockerfuse mount` and `dockerfuse engine` share once the options are known: start the
 * mount, serve until a stop signal or the mount's end, unmount, and map the ending to an exit
 * code.
 *
 * @module
 */

import type { Logger } from "../fuse/mod.ts";
import { MountError, type MountErrorKind } from "../mount/mod.ts";
import { CliError, ExitCode } from "./exit_codes.ts";

/** What serving a mount needs from its surroundings. */
export interface ServeDeps {
  logger: Logger;
  /** Aborted when the user asks to stop (SIGINT/SIGTERM). */
  stop: AbortSignal;
  /** Called once the mount answers requests. */
  onReady?: (mountpoint: string) => void;
}

/** A live mount as `serveMount` sees it: how it ends, and how to end it. */
export interface ServedMount<Ending> {
  /** Resolves when the mount has ended by itself or through `close()`. */
  readonly ended: Promise<Ending>;
  close(): Promise<void>;
}

const EXIT_FOR: Readonly<Record<MountErrorKind, ExitCode>> = {
  engine: ExitCode.EngineUnreachable,
  container: ExitCode.ContainerUnavailable,
  architecture: ExitCode.UnsupportedArchitecture,
  mountpoint: ExitCode.MountFailed,
  satellite: ExitCode.SatelliteFailed,
};

/**
 * Starts a mount on `mountpoint` and serves until a stop signal (then unmounts) or its end;
 * returns the exit code. `lostReason` tells an ending that lost the mount (exit
 * ConnectionLost) from an unmount (exit Ok).
 */
export async function serveMount<Ending>(
  mountpoint: string,
  start: () => Promise<ServedMount<Ending>>,
  deps: ServeDeps,
  lostReason: (ending: Ending) => string | undefined = () => undefined,
): Promise<ExitCode> {
  let mounted;
  try {
    mounted = await start();
  } catch (error) {
    if (error instanceof MountError) throw new CliError(EXIT_FOR[error.kind], error.message);
    throw error;
  }
  deps.onReady?.(mountpoint);
  const stopped = new Promise<"signal">((resolve) => {
    if (deps.stop.aborted) resolve("signal");
    deps.stop.addEventListener("abort", () => resolve("signal"), { once: true });
  });
  const first = await Promise.race([stopped, mounted.ended]);
  if (first === "signal") {
    deps.logger.info(`Unmounting '${mountpoint}'`);
    await mounted.close();
    return ExitCode.Ok;
  }
  const reason = lostReason(first);
  if (reason !== undefined) {
    throw new CliError(ExitCode.ConnectionLost, `Unmounted '${mountpoint}': ${reason}`);
  }
  deps.logger.info(`'${mountpoint}' was unmounted`);
  return ExitCode.Ok;
}
