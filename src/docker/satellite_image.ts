/**
 * The satellite as a minimal image per architecture and build, for the sidecar deployment: made
 * once per engine by loading a docker-archive written here (`POST /images/load`, which Docker
 * and Podman's compat API both serve; no registry; `/images/create?fromSrc=-` cannot set the
 * architecture on Docker 20.10), labelled as dockerfuse's, reused by every later mount, and
 * older builds of it removed.
 *
 * Invariants: an image carrying LABEL_BUILD was made here and holds exactly the bundle of that
 * build under IMAGE_DIR; `ensure` never touches an image without the label.
 *
 * @module
 */

import { DockerError, errorMessage } from "./errors.ts";
import type { Engine } from "./engine.ts";
import { EngineApi, responseJson, responseMessage } from "./http.ts";
import { bundleEntries, type SatelliteManifest } from "./satellite.ts";
import { type TarPart, tarParts } from "./tar.ts";
import { createHash } from "node:crypto";

/** Repository of the satellite images; the tag is `<arch>-<build id>`. */
export const SATELLITE_IMAGE_REPO = "dockerfuse-satellite";
/** Label every satellite image carries: the build id of its bundle. */
export const LABEL_BUILD = "dev.dockerfuse.satellite.build";
/** Label with the bundle's architecture ("x86_64" | "aarch64"). */
export const LABEL_ARCH = "dev.dockerfuse.satellite.arch";
/** Where the bundle lies in the image. */
export const IMAGE_DIR = "/dockerfuse";

/** A satellite image on the engine. */
export interface SatelliteImage {
  id: string;
  /** "dockerfuse-satellite:<arch>-<build>" (Podman may prefix "localhost/") */
  tags: string[];
  arch: string;
  buildId: string;
  size?: number;
}

export interface EnsureOptions {
  /** compress the import (default: no; worth it for remote engines) */
  gzip?: boolean;
  onProgress?: (sent: number, total: number) => void;
  /** one line per notable step (image created, old builds removed) */
  log?: (message: string) => void;
}

/** The image reference of a bundle. */
export function satelliteImageRef(manifest: Pick<SatelliteManifest, "arch" | "buildId">): string {
  return `${SATELLITE_IMAGE_REPO}:${manifest.arch}-${manifest.buildId}`;
}

/** The engine platform of a satellite architecture. */
export function platformOf(arch: string): string {
  if (arch === "x86_64") return "linux/amd64";
  if (arch === "aarch64") return "linux/arm64";
  throw new DockerError("unsupported", `Cannot make a satellite image for '${arch}'`);
}

/** The image config (OCI/Docker image JSON) of a bundle whose layer has `diffId`. */
export function imageConfig(
  manifest: Pick<SatelliteManifest, "arch" | "buildId">,
  diffId: string,
): Uint8Array {
  const [os, architecture] = platformOf(manifest.arch).split("/");
  return new TextEncoder().encode(JSON.stringify({
    architecture,
    ...(architecture === "arm64" ? { variant: "v8" } : {}),
    os,
    // Fixed, so the same build gives the same image id on every engine and every load.
    created: "1970-01-01T00:00:00Z",
    config: {
      Labels: { [LABEL_BUILD]: manifest.buildId, [LABEL_ARCH]: manifest.arch },
      WorkingDir: "/",
    },
    rootfs: { type: "layers", diff_ids: [diffId] },
  }));
}

/**
 * A docker-archive (`docker save` format) of the bundle as a one-layer image tagged `ref`,
 * streamed: the layer's sha256 (its diff id) is computed while it is sent, and the config that
 * names it follows the layer in the archive (loaders read the whole archive before using it).
 */
export function dockerArchive(
  layer: TarPart[],
  manifest: Pick<SatelliteManifest, "arch" | "buildId">,
): TarPart[] {
  let layerLength = 0;
  for (const part of layer) layerLength += part.length;
  const hash = createHash("sha256");
  let diffId: string | undefined;
  const layerSource = {
    length: layerLength,
    async *chunks(): AsyncGenerator<Uint8Array> {
      for await (const chunk of partChunks(layer)) {
        hash.update(chunk);
        yield chunk;
      }
      diffId = `sha256:${hash.digest("hex")}`;
    },
  };
  const placeholder = `sha256:${"0".repeat(64)}`;
  const configSource = {
    length: imageConfig(manifest, placeholder).length,
    async *chunks(): AsyncGenerator<Uint8Array> {
      if (diffId === undefined) throw new Error("the layer was not sent before its config");
      yield imageConfig(manifest, diffId);
    },
  };
  const index = new TextEncoder().encode(JSON.stringify([{
    Config: "config.json",
    RepoTags: [satelliteImageRef(manifest)],
    Layers: ["layer/layer.tar"],
  }]));
  return tarParts([
    { path: "layer", type: "directory", mode: 0o755 },
    { path: "layer/layer.tar", type: "file", mode: 0o644, source: layerSource },
    { path: "config.json", type: "file", mode: 0o644, source: configSource },
    { path: "manifest.json", type: "file", mode: 0o644, data: index },
  ]);
}

/**
 * Checks a load's JSON message stream; throws DockerError "api" with the engine's error when
 * it carries one.
 */
export function checkLoadStream(stream: string): void {
  for (const line of stream.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    let message: { error?: unknown; errorDetail?: unknown };
    try {
      message = JSON.parse(line);
    } catch {
      continue; // progress noise
    }
    const error = message.error ??
      (message.errorDetail as { message?: unknown } | undefined)?.message;
    if (typeof error === "string" && error !== "") {
      throw new DockerError("api", `Cannot create the satellite image: ${error}`);
    }
  }
}

/** Images made by dockerfuse on one engine. */
export class SatelliteImages {
  readonly #api: EngineApi;

  constructor(api: EngineApi) {
    this.#api = api;
  }

  /** Every image labelled as a dockerfuse satellite. */
  async list(): Promise<SatelliteImage[]> {
    const filters = encodeURIComponent(JSON.stringify({ label: [LABEL_BUILD] }));
    const response = await this.#api.request("GET", `/images/json?filters=${filters}`);
    if (response.status !== 200) {
      throw new DockerError(
        "api",
        `Cannot list the satellite images: ${responseMessage(response)}`,
      );
    }
    const images = responseJson(response, "list the satellite images");
    if (!Array.isArray(images)) return [];
    const out: SatelliteImage[] = [];
    for (const image of images as Record<string, unknown>[]) {
      const labels = (image.Labels ?? {}) as Record<string, string>;
      if (typeof labels[LABEL_BUILD] !== "string") continue; // engines that ignore the filter
      out.push({
        id: String(image.Id ?? ""),
        tags: Array.isArray(image.RepoTags)
          ? (image.RepoTags as string[]).filter((t) => t !== "<none>:<none>")
          : [],
        arch: String(labels[LABEL_ARCH] ?? ""),
        buildId: labels[LABEL_BUILD],
        size: typeof image.Size === "number" ? image.Size : undefined,
      });
    }
    return out;
  }

  /** The image of this bundle, if the engine has it (labelled with its build). */
  async find(manifest: SatelliteManifest): Promise<SatelliteImage | undefined> {
    const ref = satelliteImageRef(manifest);
    const response = await this.#api.request("GET", `/images/${encodeURIComponent(ref)}/json`);
    if (response.status === 404) return undefined;
    if (response.status !== 200) {
      throw new DockerError(
        "api",
        `Cannot inspect the satellite image '${ref}': ${responseMessage(response)}`,
      );
    }
    const info = responseJson(response, `inspect '${ref}'`) as Record<string, unknown>;
    const labels = ((info.Config as Record<string, unknown> | undefined)?.Labels ?? {}) as Record<
      string,
      string
    >;
    if (labels[LABEL_BUILD] !== manifest.buildId) return undefined; // not ours: replace the tag
    return {
      id: String(info.Id ?? ""),
      tags: Array.isArray(info.RepoTags) ? info.RepoTags as string[] : [],
      arch: manifest.arch,
      buildId: manifest.buildId,
    };
  }

  /**
   * The image of this bundle: found, or imported now (then older builds of the same
   * architecture are removed, best effort). Returns the reference to create containers from.
   */
  async ensure(
    bundleDir: string,
    manifest: SatelliteManifest,
    options: EnsureOptions = {},
  ): Promise<{ ref: string; created: boolean }> {
    const ref = satelliteImageRef(manifest);
    if (await this.find(manifest) !== undefined) return { ref, created: false };
    const entries = await bundleEntries(bundleDir, manifest, IMAGE_DIR.slice(1), {
      uid: 0,
      gid: 0,
    });
    const archive = dockerArchive(tarParts(entries), manifest);
    let total = 0;
    for (const part of archive) total += part.length;
    let body: AsyncIterable<Uint8Array> = progress(partChunks(archive), total, options.onProgress);
    if (options.gzip) body = compress(body);
    const response = await this.#api.request("POST", "/images/load?quiet=1", {
      body,
      contentType: "application/x-tar",
    }).catch((error) => {
      if (error instanceof DockerError && error.code !== "bundle") throw error;
      throw new DockerError(
        "bundle",
        `Cannot create the satellite image: ${errorMessage(error)}`,
        { cause: error },
      );
    });
    if (response.status !== 200) {
      throw new DockerError(
        "api",
        `Cannot create the satellite image '${ref}': ${responseMessage(response)}`,
      );
    }
    checkLoadStream(new TextDecoder().decode(response.body));
    if (await this.find(manifest) === undefined) {
      throw new DockerError(
        "api",
        `Cannot create the satellite image '${ref}': the engine loaded it but does not list it`,
      );
    }
    options.log?.(`Created the satellite image '${ref}' (${(total / 1e6).toFixed(1)} MB)`);
    const removed = await this.remove({ keep: manifest.buildId, arch: manifest.arch }).catch(
      () => [],
    );
    if (removed.length > 0) {
      options.log?.(`Removed ${removed.length} older satellite image(s): ${removed.join(", ")}`);
    }
    return { ref, created: true };
  }

  /**
   * Removes satellite images (all, or those of `arch` whose build is not `keep`). An image a
   * container still uses is left (and not reported); returns the ids removed.
   */
  async remove(options: { keep?: string; arch?: string } = {}): Promise<string[]> {
    const removed: string[] = [];
    const failures: string[] = [];
    for (const image of await this.list()) {
      if (options.arch !== undefined && image.arch !== options.arch) continue;
      if (options.keep !== undefined && image.buildId === options.keep) continue;
      // Untag every reference, then the id: a plain delete of a multiply-tagged id fails.
      const response = await this.#api.request(
        "DELETE",
        `/images/${encodeURIComponent(image.id)}?force=1&noprune=0`,
      );
      if (response.status === 200 || response.status === 404) {
        if (response.status === 200) removed.push(image.tags[0] ?? image.id.slice(0, 19));
        continue;
      }
      failures.push(`${image.tags[0] ?? image.id}: ${responseMessage(response)}`);
    }
    if (failures.length > 0 && options.keep === undefined) {
      throw new DockerError(
        "api",
        `Cannot remove the satellite image(s) ${failures.join("; ")}`,
      );
    }
    return removed;
  }
}

const CHUNK = 1024 * 1024;

/** The archive's bytes in chunks of at most 1 MiB; a source of the wrong length is an error. */
async function* partChunks(parts: TarPart[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    if (part instanceof Uint8Array) {
      for (let at = 0; at < part.length; at += CHUNK) {
        yield part.subarray(at, Math.min(part.length, at + CHUNK));
      }
      continue;
    }
    let got = 0;
    for await (const chunk of part.chunks()) {
      if (got + chunk.length > part.length) break;
      yield chunk;
      got += chunk.length;
    }
    if (got !== part.length) {
      throw new Error(`a file changed size while being sent (${got} of ${part.length} bytes)`);
    }
  }
}

async function* progress(
  bytes: AsyncIterable<Uint8Array>,
  total: number,
  onProgress: ((sent: number, total: number) => void) | undefined,
): AsyncGenerator<Uint8Array> {
  let sent = 0;
  for await (const chunk of bytes) {
    yield chunk;
    sent += chunk.length;
    onProgress?.(sent, total);
  }
}

/** gzip as a stream (source chunks are only valid until the next one: copied in). */
function compress(bytes: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  const input = ReadableStream.from(
    (async function* (): AsyncGenerator<Uint8Array<ArrayBuffer>> {
      for await (const chunk of bytes) yield chunk.slice();
    })(),
  );
  return input.pipeThrough(new CompressionStream("gzip"));
}

/**
 * The satellite image of this bundle on `engine` (imported when missing; compressed on the way
 * to a remote engine): its reference and the folder holding the bundle inside it.
 */
export async function ensureSatelliteImage(
  engine: Pick<Engine, "dial" | "apiVersion" | "isRemote">,
  bundleDir: string,
  manifest: SatelliteManifest,
  options: Omit<EnsureOptions, "gzip"> = {},
): Promise<{ ref: string; dir: string }> {
  const images = new SatelliteImages(new EngineApi(engine.dial, engine.apiVersion));
  const { ref } = await images.ensure(bundleDir, manifest, { ...options, gzip: engine.isRemote });
  return { ref, dir: IMAGE_DIR };
}
