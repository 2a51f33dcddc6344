/**
 * The Docker layer: engine connection (Docker CLI conventions), container inspection, archive
 * upload, exec streams, and satellite deployment.
 */

export { DockerError, type DockerErrorCode } from "./errors.ts";
export { connectEngine, type ContainerInfo, Engine, type EngineOptions } from "./engine.ts";
export type { ExecSession } from "./exec.ts";
export { concatBytes, withHead } from "./bytes.ts";
export type { TarEntry } from "./tar.ts";
export { hostPathOf, placeOnHost } from "./host_place.ts";
export {
  DEFAULT_EXEC_USER,
  type DeployOptions,
  deploySatellite,
  readManifest,
  type SatelliteManifest,
} from "./satellite.ts";
export { type EngineConfig, resolveEngineConfig } from "./config.ts";
export { Demuxer, type DemuxResult, type DemuxSink } from "./demux.ts";
export { ensureSatelliteImage, IMAGE_DIR, SatelliteImages } from "./satellite_image.ts";
