/**
 * The options of a container mount, their defaults, and their translation into the narrow
 * options of the layers below (FUSE, the container filesystem, RPC, deployment).
 *
 * Invariants:
 * - `MOUNT_DEFAULTS` is the only place a mount default is written; the CLI and the volume plugin
 *   start from it.
 * - `layerOptions` is the only place a lower layer's options are derived from a mount's.
 * - Values only: nothing here touches the engine, the kernel or the network.
 *
 * @module
 */

import type { DeployMode } from "../docker/deploy.ts";
import type { ContainerFsOptions } from "../fs/mod.ts";
import type { Logger, MountOptions as FuseMountOptions } from "../fuse/mod.ts";
import { WALK_SLICE_MS } from "../protocol/methods.ts";

/** What to mount, and how. Timeouts in seconds. */
export interface ContainerMountOptions {
  /** Container name or id prefix. */
  container: string;
  /** Local directory to mount on. */
  mountpoint: string;
  /** Directory inside the container that becomes the root of the mount. */
  path: string;
  readOnly: boolean;
  /** Let other local users access the mount. */
  allowOther: boolean;
  /** Mount over a non-empty directory. */
  nonEmpty: boolean;
  /** Kernel cache timeouts. */
  attrTimeout: number;
  entryTimeout: number;
  negativeTimeout: number;
  /** Seconds before an unanswered request fails with EIO (0: never). */
  requestTimeout: number;
  /** User the satellite runs as inside the container (docker exec --user). */
  user: string;
  /** Kernel writeback cache (faster small writes; see README for caveats). */
  writebackCache: boolean;
  /** No write-behind: a write is answered once the satellite has done it. */
  syncWrites: boolean;
  /**
   * Survive the satellite, the container restarting and the engine connection: wait for the
   * container to run again and redeploy the satellite (off: such a loss ends the mount).
   */
  reconnect: boolean;
  /** Seconds a request made while reconnecting waits for the connection before EIO. */
  reconnectGrace: number;
  /** When the container is removed, attach to the next container of the same name. */
  follow: boolean;
  /** Trace every FUSE request/reply and RPC at debug level. */
  debug: boolean;
  /** How the satellite reaches the container: uploaded, in a sidecar, or chosen (auto). */
  deploy: DeployMode;
  /**
   * On a local engine, talk to an uploaded satellite over its socket in the container
   * (`/proc/<pid>/cwd`) rather than through the engine's exec stream, where this host allows it.
   */
  direct: boolean;
  /** The change feed: the container tells the mount what changed (see README, Live view). */
  watch: boolean;
  /**
   * Seconds names and attributes the change feed vouches for are cached; 0: `attrTimeout` and
   * `entryTimeout` there too (what giving either of them explicitly means).
   */
  liveTimeout: number;
  /** Most directories the satellite watches (beyond: short timeouts). */
  maxWatches: number;
  /** Permission checks honour POSIX ACLs, which the kernel caches with the attributes. */
  acl: boolean;
  /** Serve the kernel through one io_uring ring per CPU (FUSE over io_uring, Linux 6.14+). */
  ioUring: boolean;
}

/** The options every mount has unless told otherwise (all but what and where). */
export type MountDefaults = Readonly<Omit<ContainerMountOptions, "container" | "mountpoint">>;

/** The defaults of a container mount. */
export const MOUNT_DEFAULTS: MountDefaults = Object.freeze({
  path: "/",
  readOnly: false,
  allowOther: false,
  nonEmpty: false,
  attrTimeout: 1,
  entryTimeout: 1,
  negativeTimeout: 1,
  requestTimeout: 30,
  user: "0:0",
  writebackCache: false,
  syncWrites: false,
  reconnect: true,
  reconnectGrace: 5,
  follow: false,
  debug: false,
  deploy: "auto",
  direct: true,
  watch: true,
  // As NFS's longest attribute cache (acdirmax): the bound on what the feed cannot see (mmap
  // writes inside the container) staying unseen.
  liveTimeout: 60,
  maxWatches: 65536,
  acl: true,
  ioUring: false,
});

/** The options to mount `container` on `mountpoint`: the defaults, then `changes`. */
export function mountOptions(
  container: string,
  mountpoint: string,
  changes: Partial<MountDefaults> = {},
): ContainerMountOptions {
  return { ...MOUNT_DEFAULTS, ...changes, container, mountpoint };
}

/** What only the mount lifecycle knows, needed to build the lower layers' options. */
export interface MountContext {
  /** `fsname` shown in /proc/mounts. */
  fsName: string;
  /** The host's architecture name as the protocol knows it ("x86_64", "aarch64"). */
  hostArch: string;
  /** The engine is reached over a network (its satellite's round trips are long). */
  remoteEngine: boolean;
  logger: Logger;
}

/** The options of each layer below a container mount. */
export interface LayerOptions {
  /** Deployment of the satellite (src/docker). */
  deploy: { root: string; user: string; mode: DeployMode; direct: boolean };
  /** The RPC client; 0 is no timeout. */
  rpc: { timeoutMs: number };
  /** The container filesystem (src/fs). */
  fs: ContainerFsOptions;
  /** The kernel side (src/fuse `mount()`). */
  fuse: FuseMountOptions;
}

/** Derives every lower layer's options from a mount's options. */
export function layerOptions(options: ContainerMountOptions, context: MountContext): LayerOptions {
  return {
    deploy: {
      root: options.path,
      user: options.user,
      mode: options.deploy,
      direct: options.direct,
    },
    rpc: { timeoutMs: options.requestTimeout * 1000 },
    fs: {
      attrTimeout: options.attrTimeout,
      entryTimeout: options.entryTimeout,
      hostArch: context.hostArch,
      writebackCache: options.writebackCache,
      writeBehind: !options.syncWrites,
      // Near, walks ahead yield to requests; far, an answer cut short costs a round trip.
      walkSliceMs: context.remoteEngine ? undefined : WALK_SLICE_MS,
      logger: context.logger,
      live: options.watch
        ? { timeout: options.liveTimeout, maxWatches: options.maxWatches, debug: options.debug }
        : undefined,
    },
    fuse: {
      fsName: context.fsName,
      subtype: "dockerfuse",
      readOnly: options.readOnly,
      allowOther: options.allowOther,
      allowNonEmpty: options.nonEmpty,
      entryTimeout: options.entryTimeout,
      attrTimeout: options.attrTimeout,
      negativeTimeout: options.negativeTimeout,
      writebackCache: options.writebackCache,
      // The change feed drops a symlink's cached target with its inode (the name's events).
      cacheSymlinks: options.watch,
      posixAcl: options.acl,
      ioUring: options.ioUring,
      logger: context.logger,
      debug: options.debug,
    },
  };
}
