/**
 * The volume driver behind the plugin protocol: volume definitions, reference-counted FUSE
 * mounts of containers, persistence and restart.
 *
 * Invariants:
 * - A volume is mounted while its set of caller IDs is non-empty (or being re-mounted); the
 *   last `unmount` closes the FUSE mount.
 * - Operations on one volume run one after the other; the store is written after every change.
 * - A mountpoint directory is removed only with a non-recursive remove, so a mount that failed to
 *   go away can never make us delete the container's files.
 *
 * @module
 */

import { abortConnection, type Logger } from "../fuse/mod.ts";
import type { ContainerMount, ContainerMountOptions } from "../mount/mod.ts";
import { MOUNT_DEFAULTS, mountOptions } from "../mount/options.ts";
import type { VolumeRecord, VolumeStore } from "./store.ts";

/** The part of a container mount the driver uses (a fake in unit tests). */
export type LiveMount = Pick<ContainerMount, "ended" | "close" | "readyMs">;

/** Mounts a container (`mountContainer` with the plugin's surroundings bound). */
export type MountFunction = (options: ContainerMountOptions) => Promise<LiveMount>;

/** Surroundings of the driver (injected). */
export interface VolumeDriverDeps {
  store: VolumeStore;
  mount: MountFunction;
  /** Directory holding one mountpoint directory per volume. */
  volumesDir: string;
  now: () => Date;
  logger: Logger;
  /** Trace FUSE requests and RPCs of every mount. */
  debug?: boolean;
}

/** A failure reported to Docker in `Err`. */
export class VolumeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VolumeError";
  }
}

/** What `VolumeDriver.Get`/`List` report about one volume. */
export interface VolumeInfo {
  Name: string;
  Mountpoint: string;
  CreatedAt: string;
  Status: Record<string, unknown>;
}

/** How long an unmount may take before a connection held elsewhere is aborted. */
const CLOSE_GRACE_MS = 3000;

/**
 * The fusectl name of the FUSE connection mounted at `path` (the kernel's dev_t of its
 * superblock, decoded from stat's userspace encoding), or undefined when it cannot be told.
 */
async function fuseConnectionOf(path: string): Promise<number | undefined> {
  try {
    const dev = (await Deno.stat(path)).dev;
    const major = Math.floor(dev / 256) & 0xfff;
    const minor = (dev & 0xff) | (Math.floor(dev / 4096) & ~0xff);
    return major * 2 ** 20 + minor;
  } catch {
    return undefined;
  }
}

/** Docker's own rule for volume names (also keeps names safe as directory names). */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const OPTIONS = ["container", "path", "readonly"];

/** Parses `-o readonly=…`; undefined when it is not a boolean spelling. */
function parseBoolean(value: string): boolean | undefined {
  const v = value.toLowerCase();
  if (["", "1", "true", "yes", "on"].includes(v)) return true;
  if (["0", "false", "no", "off"].includes(v)) return false;
  return undefined;
}

interface Volume {
  record: VolumeRecord;
  live?: LiveMount;
}

/** Docker volumes backed by container mounts; see the module invariants. */
export class VolumeDriver {
  readonly #deps: VolumeDriverDeps;
  readonly #volumes = new Map<string, Volume>();
  readonly #queues = new Map<string, Promise<unknown>>();
  #saving: Promise<void> = Promise.resolve();

  private constructor(deps: VolumeDriverDeps) {
    this.#deps = deps;
  }

  /** Loads the persisted definitions (nothing is mounted yet; see {@link restore}). */
  static async open(deps: VolumeDriverDeps): Promise<VolumeDriver> {
    const driver = new VolumeDriver(deps);
    for (const record of await deps.store.load()) driver.#volumes.set(record.name, { record });
    return driver;
  }

  /** Mountpoint directory of a volume. */
  mountpointOf(name: string): string {
    return `${this.#deps.volumesDir}/${name}`;
  }

  /** Runs `fn` after every earlier operation on the same volume. */
  #serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(fn);
    const settled = next.catch(() => {});
    this.#queues.set(name, settled);
    settled.then(() => {
      if (this.#queues.get(name) === settled) this.#queues.delete(name);
    });
    return next;
  }

  #save(): Promise<void> {
    const records = [...this.#volumes.values()].map((v) => ({
      ...v.record,
      mountIds: [...v.record.mountIds],
    }));
    this.#saving = this.#saving.catch(() => {}).then(() => this.#deps.store.save(records));
    return this.#saving;
  }

  #get(name: string): Volume {
    const volume = this.#volumes.get(name);
    if (!volume) throw new VolumeError(`no such volume '${name}'`);
    return volume;
  }

  /** `VolumeDriver.Create`: options `container` (required), `path`, `readonly`. */
  create(name: string, opts: Record<string, string>): Promise<void> {
    if (!NAME_PATTERN.test(name)) {
      return Promise.reject(
        new VolumeError(`invalid volume name '${name}' (allowed: [A-Za-z0-9][A-Za-z0-9_.-]*)`),
      );
    }
    return this.#serial(name, async () => {
      for (const key of Object.keys(opts)) {
        if (!OPTIONS.includes(key)) {
          throw new VolumeError(`unknown option '${key}' (known: ${OPTIONS.join(", ")})`);
        }
      }
      const container = opts.container ?? "";
      if (container === "") {
        throw new VolumeError("the option 'container' is required (-o container=NAME)");
      }
      const path = opts.path ?? MOUNT_DEFAULTS.path;
      if (!path.startsWith("/") || path.includes("\0")) {
        throw new VolumeError(`the option 'path' must be an absolute path, got '${path}'`);
      }
      const readOnly = opts.readonly === undefined
        ? MOUNT_DEFAULTS.readOnly
        : parseBoolean(opts.readonly);
      if (readOnly === undefined) {
        throw new VolumeError(
          `the option 'readonly' must be true or false, got '${opts.readonly}'`,
        );
      }
      const existing = this.#volumes.get(name);
      if (existing) {
        const r = existing.record;
        if (r.container === container && r.path === path && r.readOnly === readOnly) return;
        throw new VolumeError(`volume '${name}' already exists with other options`);
      }
      this.#volumes.set(name, {
        record: {
          name,
          container,
          path,
          readOnly,
          createdAt: this.#deps.now().toISOString(),
          mountIds: [],
        },
      });
      try {
        await this.#save();
      } catch (error) {
        this.#volumes.delete(name);
        throw error;
      }
      this.#deps.logger.info(`Created volume '${name}' (container '${container}', path ${path})`);
    });
  }

  /**
   * `VolumeDriver.Remove`. dockerd only removes a volume no container uses, so caller IDs still
   * recorded here are stale (their Unmount was lost while the plugin was down) and are dropped.
   */
  remove(name: string): Promise<void> {
    return this.#serial(name, async () => {
      const volume = this.#get(name);
      if (volume.record.mountIds.length > 0) {
        this.#deps.logger.warn(
          `Removing volume '${name}' with ${volume.record.mountIds.length} stale caller(s)`,
        );
      }
      await this.#close(volume);
      await this.#removeDir(name);
      this.#volumes.delete(name);
      await this.#save();
      this.#deps.logger.info(`Removed volume '${name}'`);
    });
  }

  /** `VolumeDriver.Mount`: mounts on the first caller; returns the mountpoint. */
  mount(name: string, id: string): Promise<string> {
    return this.#serial(name, async () => {
      const volume = this.#get(name);
      const ids = volume.record.mountIds;
      if (!ids.includes(id)) ids.push(id);
      try {
        await this.#ensureMounted(volume);
      } catch (error) {
        volume.record.mountIds = ids.filter((i) => i !== id);
        await this.#save().catch(() => {});
        throw error;
      }
      await this.#save();
      return this.mountpointOf(name);
    });
  }

  /** `VolumeDriver.Unmount`: unmounts when the last caller leaves. */
  unmount(name: string, id: string): Promise<void> {
    return this.#serial(name, async () => {
      const volume = this.#get(name);
      volume.record.mountIds = volume.record.mountIds.filter((i) => i !== id);
      if (volume.record.mountIds.length === 0) {
        await this.#close(volume);
        await this.#removeDir(name);
      }
      await this.#save();
    });
  }

  /** `VolumeDriver.Path`. */
  path(name: string): string {
    this.#get(name);
    return this.mountpointOf(name);
  }

  /** `VolumeDriver.Get`. */
  get(name: string): VolumeInfo {
    return this.#info(this.#get(name));
  }

  /** `VolumeDriver.List`. */
  list(): VolumeInfo[] {
    return [...this.#volumes.values()].map((v) => this.#info(v));
  }

  /** After a restart: re-mounts every volume that callers still had mounted. */
  async restore(): Promise<void> {
    const pending = [...this.#volumes.values()].filter((v) => v.record.mountIds.length > 0);
    await Promise.all(pending.map((volume) =>
      this.#serial(volume.record.name, async () => {
        try {
          await this.#ensureMounted(volume);
          this.#deps.logger.info(`Re-mounted volume '${volume.record.name}'`);
        } catch (error) {
          this.#deps.logger.warn(
            `Cannot re-mount volume '${volume.record.name}': ${(error as Error).message} ` +
              `(retried on the next mount)`,
          );
        }
      })
    ));
  }

  /** Unmounts everything (definitions and caller IDs stay persisted for {@link restore}). */
  async shutdown(): Promise<void> {
    await Promise.all(
      [...this.#volumes.values()].map((v) => this.#serial(v.record.name, () => this.#close(v))),
    );
    await this.#saving.catch(() => {});
  }

  #info(volume: Volume): VolumeInfo {
    const r = volume.record;
    return {
      Name: r.name,
      Mountpoint: this.mountpointOf(r.name),
      CreatedAt: r.createdAt,
      Status: {
        container: r.container,
        path: r.path,
        readonly: r.readOnly,
        mounted: volume.live !== undefined,
        callers: r.mountIds.length,
      },
    };
  }

  async #ensureMounted(volume: Volume): Promise<void> {
    if (volume.live) return;
    const { record } = volume;
    const mountpoint = this.mountpointOf(record.name);
    await Deno.mkdir(mountpoint, { recursive: true, mode: 0o755 });
    let live: LiveMount;
    try {
      live = await this.#deps.mount(
        mountOptions(record.container, mountpoint, {
          path: record.path,
          readOnly: record.readOnly,
          allowOther: true, // the consuming containers' processes are other users
          debug: this.#deps.debug ?? false,
        }),
      );
    } catch (error) {
      throw new VolumeError(
        `Cannot mount volume '${record.name}' of container '${record.container}': ` +
          (error as Error).message,
      );
    }
    volume.live = live;
    this.#deps.logger.info(
      `Mounted volume '${record.name}' on '${mountpoint}' in ${live.readyMs} ms`,
    );
    live.ended.then((end) => {
      if (volume.live !== live) return; // closed on purpose
      volume.live = undefined;
      const why = end.kind === "lost" ? end.reason : "unmounted from outside";
      this.#deps.logger.warn(`Volume '${record.name}' is no longer mounted: ${why}`);
    });
  }

  async #close(volume: Volume): Promise<void> {
    const live = volume.live;
    if (!live) return;
    volume.live = undefined;
    const name = volume.record.name;
    const connection = await fuseConnectionOf(this.mountpointOf(name));
    const closed = live.close().then(() => true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const inTime = await Promise.race([
      closed,
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), CLOSE_GRACE_MS)),
    ]);
    clearTimeout(timer);
    if (!inTime && connection !== undefined) {
      // A container still holds a bind of the mount in its own mount namespace: the kernel
      // keeps the FUSE connection open and the session never ends. Abort it: that container
      // sees ENOTCONN, which is the truth once we stop serving.
      this.#deps.logger.warn(
        `Volume '${name}' is still used by a container; aborting its FUSE connection`,
      );
      await abortConnection(connection).catch((error) => this.#deps.logger.warn(error.message));
    }
    await closed;
    this.#deps.logger.info(`Unmounted volume '${name}'`);
  }

  async #removeDir(name: string): Promise<void> {
    try {
      await Deno.remove(this.mountpointOf(name));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        this.#deps.logger.warn(
          `Cannot remove '${this.mountpointOf(name)}': ${(error as Error).message}`,
        );
      }
    }
  }
}
