/**
 * `dockerfuse engine`: the whole engine as one mount (containers/, images/, and volumes/ when a
 * satellite image is provided), each target's files served on demand by a satellite (see
 * tree_fs.ts for the filesystem, attach.ts for the attach/detach policy).
 *
 * Invariants:
 * - Helper containers (images, stopped containers, volumes) and snapshots carry HELPER_LABEL and an OWNER_LABEL naming this process; they
 *   are removed on detach and on close, and at the next start when their owner is dead.
 * - `mountEngine` either returns a mount that answers, or throws a `MountError` having undone
 *   what it did. Whatever ends the mount, every attachment is detached and the FUSE mount removed.
 *
 * @module
 */

import {
  connectEngine,
  type ContainerInfo,
  DockerError,
  type Engine,
  readManifest,
  type SatelliteManifest,
} from "../docker/mod.ts";
import { satelliteArch } from "../docker/engine.ts";
import { bundleEntries } from "../docker/satellite.ts";
import { type FileSystem, type FuseSession, type Logger, mount } from "../fuse/mod.ts";
import {
  connectSatellite,
  type ContainerMountDeps,
  type ContainerMountOptions,
  detach,
  type LayerOptions,
  layerOptions,
  MountError,
  prepareMountpoint,
  type SatelliteLink,
} from "../mount/mod.ts";
import { warmUpWhenIdle } from "../mount/warm_up.ts";
import type { Attachment } from "./attach.ts";
import {
  type ContainerSummary,
  EngineApi,
  type EngineEvent,
  type ImageSummary,
  type VolumeSummary,
} from "./engine_api.ts";
import type { Target } from "./layout.ts";
import type { EngineMountOptions } from "./options.ts";
import { TreeFs, type TreeSource } from "./tree_fs.ts";

export { AttachManager } from "./attach.ts";
export { TreeFs } from "./tree_fs.ts";
export { ENGINE_DEFAULTS, type EngineMountOptions } from "./options.ts";

/** Label on every helper container of the tree. */
export const HELPER_LABEL = "dev.dockerfuse.helper";
/** Prefix of every label dockerfuse puts on what it creates. */
const OWN_LABELS = "dev.dockerfuse.";
/** Label naming the process owning a helper: "<hostname>:<pid>:<process start ticks>". */
export const OWNER_LABEL = "dev.dockerfuse.owner";

/**
 * The satellite image volume helpers are created from (the sidecar mode's, imported once per
 * engine and build): its reference and the directory holding the bundle in it.
 */
export type SatelliteImageProvider = (
  bundleDir: string,
  manifest: SatelliteManifest,
) => Promise<{ ref: string; dir: string }>;

/** Surroundings of an engine mount. */
export interface EngineMountDeps extends ContainerMountDeps {
  /** Serves volumes/ when given (see {@link SatelliteImageProvider}). */
  satelliteImage?: SatelliteImageProvider;
}
/** Kernel cache timeout (s) of the tree's own names: events invalidate them besides. */
const TREE_TIMEOUT = 0.5;
/** A listing older than this is asked again even without an event. */
const LIST_TTL_MS = 1000;
/** Where a helper's satellite is uploaded. */
const HELPER_DIR = ".dockerfuse-satellite";
/** Pause before following events again after the stream broke. */
const EVENTS_RETRY_MS = 1000;

const CONTAINER_ACTIONS = new Set([
  "create",
  "start",
  "die",
  "destroy",
  "rename",
  "pause",
  "unpause",
  "stop",
]);
const IMAGE_ACTIONS = new Set(["tag", "untag", "delete", "import", "load", "pull"]);
const VOLUME_ACTIONS = new Set(["create", "destroy"]);
/** Where a volume is mounted in its helper. */
const VOLUME_DIR = "/volume";

/** A live engine mount. */
export interface EngineMount {
  readonly mountpoint: string;
  readonly tree: TreeFs;
  /** Resolves once the mount ended (unmounted by anyone, or closed). */
  readonly ended: Promise<"closed" | "unmounted">;
  /** Unmounts (lazily if busy) and detaches everything; idempotent. */
  close(): Promise<void>;
}

/** This process as OWNER_LABEL names it. */
export async function ownerId(): Promise<string> {
  return `${Deno.hostname()}:${Deno.pid}:${await startTicks(Deno.pid)}`;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks), or undefined if no such process. */
async function startTicks(pid: number): Promise<string | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Whether the process an OWNER_LABEL names is gone (only judged for this host). */
export async function ownerGone(owner: string): Promise<boolean> {
  const [host, pid, ticks] = owner.split(":");
  if (host !== Deno.hostname() || !/^\d+$/.test(pid ?? "")) return false;
  return (await startTicks(Number(pid))) !== ticks;
}

/**
 * Removes helper containers, then snapshot images, whose owner died (a killed client); the
 * number removed.
 */
export async function removeLeftovers(api: EngineApi, logger: Logger): Promise<number> {
  let removed = 0;
  for (const c of await api.containersLabelled(HELPER_LABEL)) {
    const owner = c.labels[OWNER_LABEL] ?? "";
    if (!(await ownerGone(owner))) continue;
    await api.removeContainer(c.id);
    logger.info(`Removed helper container ${c.id.slice(0, 12)} left by ${owner}`);
    removed++;
  }
  for (const image of await api.imagesLabelled(HELPER_LABEL)) {
    const owner = image.labels[OWNER_LABEL] ?? "";
    if (!(await ownerGone(owner))) continue;
    await api.removeImage(image.id);
    logger.info(`Removed snapshot image ${image.id.slice(7, 19)} left by ${owner}`);
    removed++;
  }
  return removed;
}

function containerOptions(options: EngineMountOptions, name: string): ContainerMountOptions {
  return { ...options, container: name, path: "/" };
}

function linkAttachment(link: SatelliteLink, after?: () => Promise<void>): Attachment<FileSystem> {
  let closing: Promise<void> | undefined;
  return {
    fs: link.fs as FileSystem,
    ended: link.ended,
    close: () =>
      closing ??= (async () => {
        await link.close();
        await after?.();
      })(),
  };
}

/** The engine side of the tree. */
class EngineSource implements TreeSource {
  readonly #engine: Engine;
  readonly #api: EngineApi;
  readonly #options: EngineMountOptions;
  readonly #deps: EngineMountDeps;
  readonly #owner: string;
  #volumes: Map<string, VolumeSummary> | undefined;
  /** Volume events during the listing, applied after it. */
  #pending: EngineEvent[] | undefined;

  constructor(
    engine: Engine,
    api: EngineApi,
    options: EngineMountOptions,
    deps: EngineMountDeps,
    owner: string,
  ) {
    this.#engine = engine;
    this.#api = api;
    this.#options = options;
    this.#deps = deps;
    this.#owner = owner;
  }

  async listContainers(): Promise<ContainerSummary[]> {
    const list = await this.#api.listContainers(true);
    return list.filter((c) => c.labels[HELPER_LABEL] === undefined);
  }

  /** Images, but dockerfuse's own (snapshots, the sidecar's satellite images). */
  async listImages(): Promise<ImageSummary[]> {
    const list = await this.#api.listImages();
    return list.filter((i) => !Object.keys(i.labels).some((k) => k.startsWith(OWN_LABELS)));
  }

  /**
   * Volumes: listed once, then kept current from create/destroy events (`volumeEvent`) while
   * the event stream is up: an engine with an unreachable volume plugin answers a volume
   * listing only after retrying it for 15-30 s (measured), inspecting one volume at once.
   */
  async listVolumes(): Promise<VolumeSummary[]> {
    if (this.#deps.satelliteImage === undefined) return [];
    if (this.#volumes === undefined) {
      this.#pending = [];
      try {
        const listed = await this.#api.listVolumes();
        this.#volumes = new Map(listed.map((v) => [v.name, v]));
        for (const e of this.#pending) this.volumeEvent(e); // what happened meanwhile
      } finally {
        this.#pending = undefined;
      }
    }
    return [...this.#volumes.values()];
  }

  /** A volume event; `stream: false` when the stream broke (then the next listing is full). */
  volumeEvent(event: EngineEvent | { stream: false }): void {
    if ("stream" in event) {
      this.#volumes = undefined;
      return;
    }
    if (this.#volumes === undefined) {
      this.#pending?.push(event);
      return;
    }
    if (event.action === "create") {
      this.#volumes.set(event.id, {
        name: event.id,
        created: Math.floor(Date.now() / 1000),
        labels: {},
      });
    } else if (event.action === "destroy") this.#volumes.delete(event.id);
  }

  #layers(name: string): LayerOptions {
    return layerOptions(containerOptions(this.#options, name), {
      fsName: "dockerfuse:engine",
      hostArch: Deno.build.arch,
      remoteEngine: this.#engine.isRemote,
      logger: this.#deps.logger,
    });
  }

  async open(target: Target): Promise<Attachment<FileSystem>> {
    switch (target.kind) {
      case "container": {
        const info = await this.#engine.inspectContainer(target.id);
        const link = await connectSatellite(
          this.#engine,
          info,
          this.#layers(info.name),
          this.#options,
          this.#deps,
        );
        return linkAttachment(link);
      }
      case "image":
        return await this.#openImage(target.id, target.ref);
      case "stopped": {
        // A snapshot of its filesystem, served like an image, removed with the helper.
        const snapshot = await this.#api.commit(target.id, {
          [HELPER_LABEL]: "snapshot",
          [OWNER_LABEL]: this.#owner,
        });
        const removeSnapshot = (): Promise<void> => this.#api.removeImage(snapshot);
        try {
          return await this.#openImage(snapshot, target.name, removeSnapshot);
        } catch (error) {
          await removeSnapshot().catch(() => {});
          throw error;
        }
      }
      case "volume":
        return await this.#openVolume(target.name);
    }
  }

  /** A helper from the satellite image mounting the volume, the satellite its entrypoint. */
  async #openVolume(name: string): Promise<Attachment<FileSystem>> {
    const provide = this.#deps.satelliteImage;
    if (provide === undefined) {
      throw new Error(`Cannot attach volume '${name}': no satellite image`);
    }
    const version = await this.#api.request("GET", "/version", undefined, "ask the engine") as {
      Arch?: string;
    };
    const architecture = String(version?.Arch ?? "");
    const info: ContainerInfo = {
      id: "",
      name: `volume ${name}`,
      running: true,
      arch: satelliteArch(architecture),
      platform: `linux/${architecture}`,
    };
    let helper: string | undefined;
    const remove = async (): Promise<void> => {
      if (helper !== undefined) await this.#api.removeContainer(helper);
    };
    try {
      const link = await connectSatellite(
        this.#engine,
        info,
        this.#layers(name),
        this.#options,
        this.#deps,
        async (bundleDir) => {
          const manifest = await readManifest(bundleDir);
          const image = await provide(bundleDir, manifest);
          const argv = [...manifest.loaderCommand, "--root", VOLUME_DIR]
            .map((a) => a.replaceAll("{dir}", image.dir));
          const env: Record<string, string> = {};
          for (const [k, v] of Object.entries(manifest.env)) {
            env[k] = v.replaceAll("{dir}", image.dir);
          }
          helper = await this.#api.createHelper({
            image: image.ref,
            entrypoint: argv,
            env,
            user: "0",
            binds: [`${name}:${VOLUME_DIR}`],
            labels: { [HELPER_LABEL]: "volume", [OWNER_LABEL]: this.#owner },
          });
          info.id = helper;
          return await this.#api.attachAndStart(helper);
        },
      );
      return linkAttachment(link, remove);
    } catch (error) {
      await remove().catch(() => {});
      throw error;
    }
  }

  /** A helper container from the image, the satellite its entrypoint (see module invariants). */
  async #openImage(
    imageId: string,
    ref: string,
    after?: () => Promise<void>,
  ): Promise<Attachment<FileSystem>> {
    const image = await this.#api.inspectImageRaw(imageId);
    const architecture = String(image.Architecture ?? "");
    const variant = typeof image.Variant === "string" && image.Variant ? image.Variant : undefined;
    const os = String(image.Os ?? "linux");
    const info: ContainerInfo = {
      id: "",
      name: ref,
      running: true,
      arch: satelliteArch(architecture, variant),
      platform: [os, architecture, variant].filter((p) => p).join("/"),
    };
    if (info.arch !== "x86_64" && info.arch !== "aarch64") {
      throw new MountError(
        "architecture",
        `Cannot attach image '${ref}': architecture '${info.arch}'`,
      );
    }
    let helper: string | undefined;
    const remove = async (): Promise<void> => {
      if (helper !== undefined) await this.#api.removeContainer(helper);
      await after?.();
    };
    try {
      const link = await connectSatellite(
        this.#engine,
        info,
        this.#layers(ref),
        this.#options,
        this.#deps,
        async (bundleDir) => {
          const manifest = await readManifest(bundleDir);
          const dir = `/${HELPER_DIR}`;
          const argv = [...manifest.loaderCommand, "--root", "/", "--self", dir]
            .map((a) => a.replaceAll("{dir}", dir));
          const env: Record<string, string> = {};
          for (const [k, v] of Object.entries(manifest.env)) env[k] = v.replaceAll("{dir}", dir);
          helper = await this.#api.createHelper({
            image: imageId,
            entrypoint: argv,
            env,
            user: "0",
            platform: info.platform,
            labels: { [HELPER_LABEL]: "image", [OWNER_LABEL]: this.#owner },
          });
          info.id = helper;
          const entries = await bundleEntries(bundleDir, manifest, HELPER_DIR, { uid: 0, gid: 0 });
          await this.#engine.upload(helper, "/", entries, { onProgress: this.#deps.onProgress });
          return await this.#api.attachAndStart(helper);
        },
      );
      return linkAttachment(link, remove);
    } catch (error) {
      if (helper !== undefined) await this.#api.removeContainer(helper).catch(() => {});
      throw error;
    }
  }
}

/** Follows engine events into `tree.refresh` until `signal` aborts, reconnecting as needed. */
async function followEvents(
  api: EngineApi,
  source: EngineSource,
  tree: TreeFs,
  logger: Logger,
  signal: AbortSignal,
  opened: () => void,
): Promise<void> {
  const onEvent = (e: EngineEvent): void => {
    if (e.attributes[HELPER_LABEL] !== undefined) return;
    if (e.type === "container" && CONTAINER_ACTIONS.has(e.action)) void tree.refresh("containers");
    if (e.type === "image" && IMAGE_ACTIONS.has(e.action)) void tree.refresh("images");
    if (e.type === "volume" && VOLUME_ACTIONS.has(e.action)) {
      source.volumeEvent(e);
      void tree.refresh("volumes");
    }
  };
  while (!signal.aborted) {
    try {
      await api.followEvents(signal, onEvent, opened);
    } catch (error) {
      if (signal.aborted) return;
      opened(); // serve without events rather than not at all; listings still age out
      logger.warn(`${(error as Error).message}; retrying`);
    }
    if (signal.aborted) return;
    // Anything may have changed while the stream was down.
    source.volumeEvent({ stream: false });
    for (const s of ["containers", "images", "volumes"] as const) void tree.refresh(s);
    await new Promise((resolve) => setTimeout(resolve, EVENTS_RETRY_MS));
  }
}

function rethrow(error: unknown): never {
  if (error instanceof MountError) throw error;
  if (error instanceof DockerError) {
    throw new MountError(
      error.code === "config" || error.code === "unreachable" ? "engine" : "satellite",
      error.message,
    );
  }
  throw error;
}

/** Mounts the engine on `options.mountpoint`; see the module invariants. */
export async function mountEngine(
  options: EngineMountOptions,
  deps: EngineMountDeps,
): Promise<EngineMount> {
  const { logger } = deps;
  await prepareMountpoint(options, logger);
  const engine = await connectEngine({ env: deps.env, home: deps.env.HOME }).catch(rethrow);
  const stopEvents = new AbortController();
  let tree: TreeFs | undefined;
  let fuse: FuseSession | undefined;
  let events: Promise<void> | undefined;
  const teardown = async (): Promise<void> => {
    stopEvents.abort();
    if (fuse) await detach(fuse, options.mountpoint, logger);
    await tree?.close();
    await events;
    engine.close();
  };
  try {
    const api = await EngineApi.connect(deps.env, engine.apiVersion).catch(rethrow);
    await removeLeftovers(api, logger).catch(rethrow);
    const source = new EngineSource(engine, api, options, deps, await ownerId());
    tree = new TreeFs(source, {
      sections: deps.satelliteImage
        ? ["containers", "images", "volumes"]
        : ["containers", "images"],
      idleMs: options.idleTimeout * 1000,
      maxAttached: options.maxAttached,
      treeTimeout: Math.min(TREE_TIMEOUT, options.entryTimeout),
      listTtlMs: LIST_TTL_MS,
      logger,
    });
    const started = performance.now();
    const layers = layerOptions(containerOptions(options, "engine"), {
      fsName: "dockerfuse:engine",
      hostArch: Deno.build.arch,
      remoteEngine: engine.isRemote,
      logger,
    });
    try {
      fuse = await mount(tree, options.mountpoint, layers.fuse);
      await Deno.stat(options.mountpoint);
    } catch (error) {
      throw new MountError("mountpoint", (error as Error).message);
    }
    tree.setInvalidator(fuse);
    let eventsOpen!: () => void;
    const subscribed = new Promise<void>((resolve) => eventsOpen = resolve);
    events = followEvents(api, source, tree, logger, stopEvents.signal, eventsOpen);
    await subscribed;
    logger.info(
      `Mounted the engine (${api.description}) on '${options.mountpoint}' in ${
        Math.round(performance.now() - started)
      } ms`,
    );
    // Once nothing is asked for a moment, the client's walking paths are compiled ahead.
    void warmUpWhenIdle(fuse, layers, logger, stopEvents.signal);
    let closing = false;
    const session = fuse;
    const ended = session.closed.then(async (): Promise<"closed" | "unmounted"> => {
      if (closing) return "closed";
      await teardown();
      return "unmounted";
    });
    return {
      mountpoint: options.mountpoint,
      tree,
      ended,
      async close() {
        if (closing) return;
        closing = true;
        stopEvents.abort();
        try {
          await session.unmount({ lazy: false });
        } catch (error) {
          logger.warn(
            `'${options.mountpoint}' is busy (${(error as Error).message}); unmounting lazily`,
          );
        }
        await teardown();
      },
    };
  } catch (error) {
    await teardown();
    throw error;
  }
}
