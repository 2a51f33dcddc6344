/**
 * `dockerfuse prune`: removes the reusable satellite images (sidecar mode) from the engine. A
 * later sidecar mount makes its image again.
 *
 * @module
 */

import { connectEngine, DockerError } from "../docker/mod.ts";
import { EngineApi } from "../docker/http.ts";
import { SatelliteImages } from "../docker/satellite_image.ts";
import type { Logger } from "../fuse/mod.ts";
import { CliError, ExitCode } from "./exit_codes.ts";

/** Removes every satellite image; an image a running helper uses makes it fail (exit 3). */
export async function runPrune(
  env: Record<string, string | undefined>,
  logger: Logger,
): Promise<ExitCode> {
  const fail = (error: unknown): never => {
    if (error instanceof DockerError) {
      throw new CliError(ExitCode.EngineUnreachable, error.message);
    }
    throw error;
  };
  const engine = await connectEngine({ env, home: env.HOME }).catch(fail);
  try {
    const images = new SatelliteImages(new EngineApi(engine.dial, engine.apiVersion));
    const removed = await images.remove().catch(fail);
    logger.info(
      removed.length === 0
        ? "No satellite image to remove"
        : `Removed ${removed.length} satellite image(s): ${removed.join(", ")}`,
    );
    return ExitCode.Ok;
  } finally {
    engine.close();
  }
}
