/**
 * One container mount's lifecycle: engine → container → satellite → RPC → FUSE, and the way
 * back. Used by the CLI (`dockerfuse mount`) and the volume plugin.
 *
 * Invariants:
 * - `mountContainer` either returns a mount that answers requests, or throws a `MountError`
 *   having undone everything it did (no mount, no satellite, no engine connection left).
 * - Whatever ends a mount (close(), an external unmount, the container removed, or with
 *   `reconnect` off the container or satellite going away), the FUSE mount is removed and the
 *   satellite's stdin closed, so neither a stale mount nor a satellite process is left behind.
 * - With `reconnect` (the default) the loss of the satellite, of the container's run or of the
 *   engine connection does not end the mount: `reconnect.ts` redeploys the satellite once the
 *   container runs again, and the FUSE session stays up meanwhile (requests wait a grace
 *   period, then fail with EIO).
 *
 * @module
 */

import {
  connectEngine,
  type ContainerInfo,
  DockerError,
  type Engine,
  type ExecSession,
  readManifest,
} from "../docker/mod.ts";
import { deployChosen } from "../docker/deploy.ts";
import type { ContainerFs } from "../fs/mod.ts";
import type { FuseSession, Logger, PreparedMount } from "../fuse/mod.ts";
import { checkMountpoint, inspectMountpoint, recoverStaleMount } from "../fuse/mountpoint.ts";
import type { Change, RpcClientOptions } from "../protocol/mod.ts";
import type { Channel } from "./direct.ts";
import { type ContainerMountOptions, type LayerOptions, layerOptions } from "./options.ts";
import { type ReconnectSteps, type Satellite, supervise, waitForContainer } from "./reconnect.ts";
import type { ReconnectingRpc } from "./reconnecting_rpc.ts";

export {
  type ContainerMountOptions,
  type LayerOptions,
  layerOptions,
  MOUNT_DEFAULTS,
  type MountContext,
  type MountDefaults,
  mountOptions,
} from "./options.ts";

/** The modules of `running.ts`: loaded once per process, when a first satellite has started. */
let running: Promise<typeof import("./running.ts")> | undefined;
function loadRunning(): Promise<typeof import("./running.ts")> {
  return running ??= import("./running.ts");
}

/** Surroundings of a mount (injected). */
export interface ContainerMountDeps {
  env: Record<string, string | undefined>;
  logger: Logger;
  /** Folder holding `<arch>/manifest.json` satellite bundles. */
  bundleRoot: string;
  onProgress?: (sent: number, total: number) => void;
  /** Builds (or refreshes) the bundle for an architecture before use; throws on failure. */
  prepareBundle?: (arch: string) => Promise<void>;
}

/** Why mounting failed; the CLI maps each kind to an exit code. */
export type MountErrorKind =
  | "engine" // engine unreachable or misconfigured
  | "container" // not found or not running
  | "architecture" // no satellite for the container's architecture
  | "mountpoint" // the mount itself failed
  | "satellite"; // upload, start or handshake failed

/** A failure of `mountContainer`, with a one-line "Cannot mount …" style message. */
export class MountError extends Error {
  readonly kind: MountErrorKind;
  constructor(kind: MountErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MountError";
    this.kind = kind;
  }
}

/** How a mount ended. */
export type MountEnding =
  | { kind: "closed" } // through close()
  | { kind: "unmounted" } // someone else unmounted it
  | { kind: "lost"; reason: string }; // container, satellite or engine went away

/** A live container mount. */
export interface ContainerMount {
  readonly container: ContainerInfo;
  readonly mountpoint: string;
  /** Milliseconds from the start of deployment until the mount answered. */
  readonly readyMs: number;
  /** Resolves when the mount has ended, for whatever reason; it is gone then. */
  readonly ended: Promise<MountEnding>;
  /** Unmounts (plain first so data is flushed, lazily if busy) and stops the satellite. */
  close(): Promise<void>;
}

const SUPPORTED_ARCHES = ["x86_64", "aarch64"];
const STDERR_TAIL = 4096;
const HANDSHAKE_TIMEOUT_MS = 60_000;
/** How long a lost mount looks for a container stop before blaming the satellite. */
const LOST_POLLS = 10;
const LOST_POLL_MS = 150;
const LOST_INSPECT_TIMEOUT_MS = 5_000;

function dockerKind(error: DockerError): MountErrorKind {
  switch (error.code) {
    case "config":
    case "unreachable":
      return "engine";
    case "not-found":
    case "not-running":
      return "container";
    default:
      return "satellite";
  }
}

function rethrowDocker(error: unknown): never {
  if (error instanceof DockerError) throw new MountError(dockerKind(error), error.message);
  throw error;
}

/** Characters the FUSE layer accepts in fsname: anything else becomes "-". */
function fsNameFor(container: ContainerInfo): string {
  return `dockerfuse:${container.name.replace(/^\//, "")}`.replace(/[^A-Za-z0-9._:@/+-]/g, "-");
}

/** Keeps the last bytes of the satellite's stderr, logging each line at debug level. */
function watchStderr(stream: ReadableStream<Uint8Array>, logger: Logger): () => string {
  let tail = "";
  const decoder = new TextDecoder();
  (async () => {
    try {
      for await (const chunk of stream) {
        const text = decoder.decode(chunk, { stream: true });
        tail = (tail + text).slice(-STDERR_TAIL);
        for (const line of text.split("\n")) if (line) logger.debug(`satellite: ${line}`);
      }
    } catch { /* the stream ends with the session */ }
  })();
  return () => tail.trim();
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000} s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Recovers a stale mount left by a crashed earlier run, then checks the mountpoint. */
export async function prepareMountpoint(
  options: Pick<ContainerMountOptions, "mountpoint" | "nonEmpty">,
  logger: Logger,
): Promise<void> {
  const where = options.mountpoint;
  const fail = (error: unknown): never => {
    throw new MountError("mountpoint", `Cannot mount '${where}': ${(error as Error).message}`);
  };
  if (await inspectMountpoint(where).catch(fail) === "stale") {
    await recoverStaleMount(where).catch(fail);
    logger.warn(`Recovered a stale mount left at '${where}' by an earlier run`);
  }
  await checkMountpoint(where, { allowNonEmpty: options.nonEmpty }).catch((error) => {
    throw new MountError("mountpoint", (error as Error).message); // already "Cannot mount …"
  });
}

async function findContainer(engine: Engine, name: string): Promise<ContainerInfo> {
  const info = await engine.inspectContainer(name).catch(rethrowDocker);
  if (!SUPPORTED_ARCHES.includes(info.arch)) {
    throw new MountError(
      "architecture",
      `Cannot mount '${name}': its architecture '${info.arch}' is not supported ` +
        `(supported: amd64, arm64)`,
    );
  }
  return info;
}

async function bundleFor(root: string, arch: string): Promise<{ dir: string; buildId: string }> {
  const dir = `${root}/${arch}`;
  try {
    return { dir, buildId: (await readManifest(dir)).buildId };
  } catch (error) {
    throw new MountError(
      "satellite",
      `Cannot find the ${arch} satellite in '${dir}': ${(error as Error).message} ` +
        `(run 'deno task build-satellite')`,
    );
  }
}

/** How long a lazily unmounted session may stay alive (held by another mount namespace). */
const DETACH_GRACE_MS = 2000;

/**
 * Lazy unmount; if the session is still held elsewhere after a grace period (a bind mount in
 * another mount namespace keeps the connection), abort the connection so it ends for everyone.
 */
export async function detach(
  fuse: FuseSession,
  mountpoint: string,
  logger: Logger,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ended = await Promise.race([
    fuse.unmount({ lazy: true }).then(() => true, () => true),
    new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), DETACH_GRACE_MS)),
  ]);
  clearTimeout(timer);
  if (ended) return;
  logger.warn(`'${mountpoint}' is still held elsewhere (another mount namespace); aborting it`);
  await fuse.abort().catch(() => false);
}

/** A deployed, connected satellite of a mount (see `reconnect.ts`). */
interface MountSatellite extends Satellite {
  /** The last lines of its stderr. */
  readonly stderrTail: () => string;
}

/**
 * Starts the satellite for `container` (deployed as `deploy.mode` says, unless `start` starts it
 * another way from the bundle directory), connects the RPC client and waits for the handshake.
 * Throws a `MountError` having stopped what it started (not `engine`).
 */
async function startSatellite(
  engine: Engine,
  container: ContainerInfo,
  options: {
    debug: boolean;
    onEvent?: (changes: readonly Change[]) => void;
    /** Called once, when the satellite's process is starting, while its runtime starts. */
    onStarted?: () => void;
  },
  deps: ContainerMountDeps,
  deploy: LayerOptions["deploy"],
  rpcOptions: LayerOptions["rpc"],
  start?: (bundleDir: string) => Promise<ExecSession>,
): Promise<MountSatellite> {
  const { logger } = deps;
  const bundle = await bundleFor(deps.bundleRoot, container.arch);
  const started = performance.now();
  let starting = false;
  const onStarting = (): void => {
    if (!starting) options.onStarted?.();
    starting = true;
  };
  const exec = await (start ? start(bundle.dir) : deployChosen(engine, container, bundle.dir, {
    ...deploy,
    onProgress: deps.onProgress,
    log: (message) => logger.info(message),
    onStarting,
  }).then((d) => d.session)).catch(rethrowDocker);
  onStarting();
  const stderrTail = watchStderr(exec.stderr, logger);
  const { DIRECT_BULK_BYTES, openChannel, RpcClient } = await loadRunning().catch((error) => {
    exec.kill();
    throw error;
  });
  const failed = (error: unknown): MountError => {
    const tail = stderrTail();
    return new MountError(
      "satellite",
      `Cannot start the satellite in '${container.name}': ${(error as Error).message}` +
        (tail ? `\nsatellite stderr:\n${tail}` : ""),
    );
  };
  let channel: Channel;
  try {
    channel = await withTimeout(openChannel(exec), HANDSHAKE_TIMEOUT_MS, "the satellite's hello");
  } catch (error) {
    exec.kill();
    throw failed(error);
  }
  if (channel.note !== undefined) {
    logger.info(`Not using the satellite's direct socket: ${channel.note}`);
  }
  const clientOptions: RpcClientOptions = {
    expectedBuildId: bundle.buildId,
    ...(channel.kind === "direct" ? { bulkBytes: DIRECT_BULK_BYTES } : {}),
    ...rpcOptions,
    onEvent: options.onEvent,
    onTrace: options.debug
      ? (e) =>
        logger.debug(
          `rpc ${e.id} ${e.method} ${
            e.result.ok ? "ok" : `${e.result.code} (${e.result.message})`
          }`,
        )
      : undefined,
  };
  const rpc = channel.kind === "direct"
    ? new RpcClient(channel.conn, clientOptions)
    : new RpcClient(channel.readable, channel.writable, clientOptions);
  let execEnded = false;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    stopped ??= (async () => {
      await rpc.close("the mount ended").catch(() => {});
      channel.close();
      exec.kill();
    })();
  const ended = Promise.race([
    rpc.closed.then((info) => info.reason),
    exec.exited.then((r) => {
      execEnded = true;
      return `exec ended with code ${r.code ?? "unknown"}`;
    }),
  ]);
  try {
    const hello = await withTimeout(rpc.ready, HANDSHAKE_TIMEOUT_MS, "the satellite handshake");
    logger.info(
      `Satellite ready in '${container.name}' (${hello.arch}, pid ${hello.pid}, uid ${hello.uid}) ` +
        `after ${Math.round(performance.now() - started)} ms` +
        (channel.kind === "direct" ? ", on its direct socket" : ""),
    );
    return {
      call: rpc.call,
      get isClosed(): boolean {
        return execEnded || rpc.isClosed;
      },
      ended,
      stop,
      stderrTail,
    };
  } catch (error) {
    await stop();
    throw failed(error);
  }
}

/** A satellite serving one container (never reconnected), and the `ContainerFs` built on it. */
export interface SatelliteLink {
  readonly fs: ContainerFs;
  /** Resolves with the reason once the satellite or its stream ended. */
  readonly ended: Promise<string>;
  /** The last lines of the satellite's stderr. */
  readonly stderrTail: () => string;
  /** Closes the RPC client and the exec stream; idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the satellite for `container` (see {@link startSatellite}; the bundle is prepared first)
 * and builds the `ContainerFs` on it: what the engine tree attaches per container, image or
 * volume.
 */
export async function connectSatellite(
  engine: Engine,
  container: ContainerInfo,
  layers: LayerOptions,
  options: { debug: boolean },
  deps: ContainerMountDeps,
  start?: (bundleDir: string) => Promise<ExecSession>,
): Promise<SatelliteLink> {
  await prepareBundle(container, deps);
  const { ContainerFs } = await loadRunning();
  const satellite = await startSatellite(
    engine,
    container,
    options,
    deps,
    layers.deploy,
    layers.rpc,
    start,
  );
  return {
    fs: new ContainerFs(satellite.call, layers.fs),
    ended: satellite.ended,
    stderrTail: satellite.stderrTail,
    close: satellite.stop,
  };
}

/** Builds (or refreshes) the bundle for the container's architecture when the deps can. */
async function prepareBundle(container: ContainerInfo, deps: ContainerMountDeps): Promise<void> {
  if (!deps.prepareBundle) return;
  await deps.prepareBundle(container.arch).catch((error) => {
    throw new MountError(
      "satellite",
      `Cannot build the ${container.arch} satellite: ${(error as Error).message}`,
    );
  });
}

/** Mounts a container's filesystem; see the module invariants. */
export async function mountContainer(
  options: ContainerMountOptions,
  deps: ContainerMountDeps,
): Promise<ContainerMount> {
  const { logger } = deps;
  const engineOptions = { env: deps.env, home: deps.env.HOME };
  // The container is inspected beside the ping: one round trip less to a remote engine. Both
  // while the mountpoint is checked; a bad mountpoint is reported without waiting for them.
  const connecting = connectEngine({ ...engineOptions, container: options.container });
  connecting.catch(() => {}); // reported when awaited below
  try {
    await prepareMountpoint(options, logger);
  } catch (error) {
    connecting.then((e) => e.close(), () => {});
    throw error;
  }
  // Replaced when the engine is reconnected to.
  let engine = await connecting.catch(rethrowDocker);
  let satellite: MountSatellite | undefined;
  let fuse: FuseSession | undefined;
  let link: ReconnectingRpc | undefined;
  const stopping = new AbortController();
  let current = (): Satellite | undefined => satellite;
  const teardown = async (): Promise<void> => {
    stopping.abort();
    link?.end();
    if (fuse) await detach(fuse, options.mountpoint, logger);
    await current()?.stop();
    engine.close();
  };
  try {
    const container = await findContainer(engine, options.container);
    await prepareBundle(container, deps);
    const layers = layerOptions(options, {
      fsName: fsNameFor(container),
      hostArch: Deno.build.arch,
      remoteEngine: engine.isRemote,
      logger,
    });
    const started = performance.now();
    // The change feed's events go to the filesystem (built once the first satellite answers).
    let events: ContainerFs | undefined;
    const satelliteOptions = {
      debug: options.debug,
      onEvent: (changes: readonly Change[]) => events?.onChanges(changes),
    };
    // The FUSE side is readied while the satellite starts its runtime (this thread waits).
    let prepared: Promise<PreparedMount> | undefined;
    try {
      satellite = await startSatellite(
        engine,
        container,
        {
          ...satelliteOptions,
          onStarted: () => {
            prepared = loadRunning().then((r) => r.prepareMount(options.mountpoint, layers.fuse));
            prepared.catch(() => {}); // reported when awaited below
          },
        },
        deps,
        layers.deploy,
        layers.rpc,
      );
    } catch (error) {
      prepared?.then((p) => p.cancel(), () => {});
      throw error;
    }
    const { ContainerFs, prepareMount, ReconnectingRpc, warmUpWhenIdle } = await loadRunning();
    // A request made while the satellite is away waits this long for the next one.
    const rpcLink = link = new ReconnectingRpc({
      graceMs: options.reconnect ? options.reconnectGrace * 1000 : 0,
    });
    rpcLink.attach(satellite);
    const fs = events = new ContainerFs(rpcLink, layers.fs);
    try {
      fuse = await (await (prepared ?? prepareMount(options.mountpoint, layers.fuse))).mount(fs);
      await Deno.stat(options.mountpoint); // the mount answers
    } catch (error) {
      throw new MountError("mountpoint", (error as Error).message);
    }
    fs.attachKernel(fuse);
    const readyMs = Math.round(performance.now() - started);
    logger.info(
      `Mounted '${container.name}:${options.path}' on '${options.mountpoint}' in ${readyMs} ms`,
    );
    // Once nothing is asked for a moment, the walking paths are compiled ahead (warm_up.ts).
    void warmUpWhenIdle(fuse, layers, logger, stopping.signal);
    let lost: Promise<MountEnding>;
    if (options.reconnect) {
      const steps: ReconnectSteps<ContainerInfo> = {
        waitRunning: (signal) =>
          waitForContainer(
            engine,
            options.follow ? container.name : container.id,
            container.name,
            options.follow,
            signal,
          ),
        deploy: async (next) => {
          if (!SUPPORTED_ARCHES.includes(next.arch)) {
            throw new MountError(
              "architecture",
              `Cannot mount '${next.name}': its architecture '${next.arch}' is not supported`,
            );
          }
          if (next.id !== container.id) {
            logger.info(
              `Following '${container.name}' to its new container ${next.id.slice(0, 12)}`,
            );
          }
          return await startSatellite(
            engine,
            next,
            satelliteOptions,
            deps,
            layers.deploy,
            layers.rpc,
          );
        },
        engineLost: (error) =>
          (error instanceof DockerError && error.code === "unreachable") ||
          (error instanceof MountError && error.kind === "engine"),
        reconnectEngine: async () => {
          const next = await connectEngine(engineOptions);
          engine.close();
          engine = next;
        },
      };
      const supervisor = supervise(satellite, {
        link: rpcLink,
        steps,
        logger,
        describe: (c) => c.name,
        onReconnected: () => {
          fs.reconnected();
          // Nodes whose path now holds another inode: the kernel drops its entry for them.
          const started = performance.now();
          fs.revalidate(async (node) => {
            if (node.parent) await fuse!.invalidateEntry(node.parent, node.name).catch(() => {});
          }).then((changed) =>
            logger.debug(
              `Revalidated nodes after reconnecting in ${
                Math.round(performance.now() - started)
              } ms: ${changed} changed`,
            )
          );
        },
      }, stopping.signal);
      current = supervisor.current;
      lost = supervisor.ended.then((reason): MountEnding =>
        reason === undefined ? { kind: "closed" } : { kind: "lost", reason }
      );
    } else {
      const first = satellite;
      lost = first.ended.then(async (reason): Promise<MountEnding> => {
        const tail = first.stderrTail().split("\n").pop();
        const why = await whyLost(engine, container);
        return {
          kind: "lost",
          reason: why ?? `the satellite ended (${reason})${tail ? `: ${tail}` : ""}`,
        };
      });
    }
    return live({
      container,
      mountpoint: options.mountpoint,
      readyMs,
      fuse,
      lost,
      logger,
      teardown,
    });
  } catch (error) {
    await teardown();
    throw error;
  }
}

/**
 * Why the exec stream ended when it was not the satellite's own doing: the container stopped or
 * was removed, or the engine is out of reach; undefined while the container still runs. The
 * engine reports a stop a moment after the exec stream ends, hence the short polling.
 */
async function whyLost(engine: Engine, container: ContainerInfo): Promise<string | undefined> {
  for (let attempt = 0; attempt < LOST_POLLS; attempt++) {
    try {
      const info = await withTimeout(
        engine.inspectContainer(container.id, { allowStopped: true }),
        LOST_INSPECT_TIMEOUT_MS,
        "inspecting the container",
      );
      if (!info.running) return `container '${container.name}' stopped`;
    } catch (error) {
      if (error instanceof DockerError && error.code === "not-found") {
        return `container '${container.name}' was removed`;
      }
      return `lost the connection to the Docker engine (${(error as Error).message})`;
    }
    await new Promise((resolve) => setTimeout(resolve, LOST_POLL_MS));
  }
  return undefined;
}

/** The parts of a mount that is up, for {@link live}. */
interface LiveParts {
  container: ContainerInfo;
  mountpoint: string;
  readyMs: number;
  fuse: FuseSession;
  /** Resolves when the satellite is gone for good, with why. */
  lost: Promise<MountEnding>;
  logger: Logger;
  /** Undoes everything; idempotent. */
  teardown: () => Promise<void>;
}

/** The handle of a mount that is up: watches for its end, and closes it. */
function live(parts: LiveParts): ContainerMount {
  const { container, mountpoint, readyMs, fuse, lost, logger, teardown } = parts;
  let closing = false;
  const ending = Promise.race([
    fuse.closed.then((): MountEnding => ({ kind: "unmounted" })),
    lost,
  ]);
  const ended = ending.then(async (end): Promise<MountEnding> => {
    if (closing) return { kind: "closed" };
    await teardown();
    return end;
  });
  return {
    container,
    mountpoint,
    readyMs,
    ended,
    async close() {
      if (closing) return;
      closing = true;
      try {
        await fuse.unmount({ lazy: false });
      } catch (error) {
        logger.warn(`'${mountpoint}' is busy (${(error as Error).message}); unmounting lazily`);
      }
      await teardown();
    },
  };
}
