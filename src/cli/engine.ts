/**
 * `dockerfuse engine`: the CLI side of an engine mount (src/tree), with signals and exit codes.
 *
 * @module
 */

import { connectEngine, ensureSatelliteImage } from "../docker/mod.ts";
import type { ContainerMountDeps } from "../mount/mod.ts";
import { MountError, type MountErrorKind } from "../mount/mod.ts";
import { type EngineMountOptions, mountEngine } from "../tree/mod.ts";
import { CliError, ExitCode } from "./exit_codes.ts";

/** What `runEngine` needs from its surroundings. */
export interface EngineDeps extends ContainerMountDeps {
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

/** Mounts the engine and serves until a signal or an unmount; returns the exit code. */
export async function runEngine(options: EngineMountOptions, deps: EngineDeps): Promise<ExitCode> {
  let mounted;
  try {
    mounted = await mountEngine(options, {
      ...deps,
      satelliteImage: async (bundleDir, manifest) => {
        const engine = await connectEngine({ env: deps.env, home: deps.env.HOME });
        try {
          return await ensureSatelliteImage(engine, bundleDir, manifest, {
            log: (message) => deps.logger.info(message),
          });
        } finally {
          engine.close();
        }
      },
    });
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
  deps.logger.info(`'${options.mountpoint}' was unmounted`);
  return ExitCode.Ok;
}
