/**
 * `dockerfuse engine`: the CLI side of an engine mount (src/tree), with signals and exit codes.
 *
 * @module
 */

import { connectEngine, ensureSatelliteImage } from "../docker/mod.ts";
import type { ContainerMountDeps } from "../mount/mod.ts";
import { type EngineMountOptions, mountEngine } from "../tree/mod.ts";
import type { ExitCode } from "./exit_codes.ts";
import { type ServeDeps, serveMount } from "./serve.ts";

/** What `runEngine` needs from its surroundings. */
export interface EngineDeps extends ContainerMountDeps, ServeDeps {}

/** Mounts the engine and serves until a signal or an unmount; returns the exit code. */
export function runEngine(options: EngineMountOptions, deps: EngineDeps): Promise<ExitCode> {
  return serveMount(options.mountpoint, () =>
    mountEngine(options, {
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
    }), deps);
}
