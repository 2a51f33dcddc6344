/**
 * One container mount's lifecycle: engine → container → satellite → RPC → FUSE, and the way
 * back. Used by the CLI (`dockerfuse mount`) and the volume plugin.
 *
 * Invariants:
 * - `mountContainer` either returns a mount that answers requests, or throws a `MountError`
 *   having undone everything it did (no mount, no satellite, no engine connection left).
 * - Whatever ends a mount (close(), an external unmount, the container or satellite going
 *   away), the FUSE mount is removed and the satellite's stdin closed, so neither a stale
 *   mount nor a satellite process is left behind.
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
import { deployChosen, type DeployMode } from "../docker/deploy.ts";
import { ContainerFs } from "../fs/mod.ts";
import {
  type FuseSession,
  inspectMountpoint,
  type Logger,
  mount,
  recoverStaleMount,
} from "../fuse/mod.ts";
import { RpcClient } from "../protocol/mod.ts";

/** What to mount, and how. Timeouts in seconds. */
export interface ContainerMountOptions {
  container: string;
  mountpoint: string;
  /** Directory inside the container that becomes the root of the mount. */
  path: string;
  readOnly: boolean;
  allowOther: boolean;
  nonEmpty: boolean;
  attrTimeout: number;
  entryTimeout: number;
  negativeTimeout: number;
  /** Seconds before an unanswered request fails with EIO (0: never). */
  requestTimeout: number;
  /** Exec user inside the container. */
  user: string;
  writebackCache: boolean;
  /** No write-behind: a write is answered once the satellite has done it. */
  syncWrites?: boolean;
  debug: boolean;
  /** How the satellite reaches the container (default "auto"; see src/docker/deploy.ts). */
  deploy?: DeployMode;
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

/** Checks the mountpoint; recovers a stale mount left by a crashed earlier run. */
async function prepareMountpoint(options: ContainerMountOptions, logger: Logger): Promise<void> {
  const where = options.mountpoint;
  const fail = (reason: string): never => {
    throw new MountError("mountpoint", `Cannot mount '${where}': ${reason}`);
  };
  const state = await inspectMountpoint(where).catch((e) => fail((e as Error).message));
  switch (state) {
    case "missing":
      return fail("no such directory (create it with mkdir)");
    case "not-directory":
      return fail("not a directory");
    case "mounted":
      return fail(`something is already mounted there (dockerfuse unmount ${where})`);
    case "non-empty":
      if (!options.nonEmpty) fail("the directory is not empty (use --nonempty to mount over it)");
      return;
    case "stale":
      await recoverStaleMount(where).catch((e) => fail((e as Error).message));
      logger.warn(`Recovered a stale mount left at '${where}' by an earlier run`);
      return;
    case "empty":
      return;
  }
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
async function detach(fuse: FuseSession, mountpoint: string, logger: Logger): Promise<void> {
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

/** Mounts a container's filesystem; see the module invariants. */
export async function mountContainer(
  options: ContainerMountOptions,
  deps: ContainerMountDeps,
): Promise<ContainerMount> {
  const { logger } = deps;
  await prepareMountpoint(options, logger);
  const engine = await connectEngine({ env: deps.env, home: deps.env.HOME }).catch(rethrowDocker);
  let exec: ExecSession | undefined;
  let rpc: RpcClient | undefined;
  let fuse: FuseSession | undefined;
  const teardown = async (): Promise<void> => {
    if (fuse) await detach(fuse, options.mountpoint, logger);
    if (rpc) await rpc.close("the mount ended").catch(() => {});
    exec?.kill();
    engine.close();
  };
  try {
    const container = await findContainer(engine, options.container);
    if (deps.prepareBundle) {
      await deps.prepareBundle(container.arch).catch((error) => {
        throw new MountError(
          "satellite",
          `Cannot build the ${container.arch} satellite: ${(error as Error).message}`,
        );
      });
    }
    const bundle = await bundleFor(deps.bundleRoot, container.arch);
    const started = performance.now();
    exec = (await deployChosen(engine, container, bundle.dir, {
      mode: options.deploy ?? "auto",
      root: options.path,
      user: options.user,
      onProgress: deps.onProgress,
      log: (message) => logger.info(message),
    }).catch(rethrowDocker)).session;
    const stderrTail = watchStderr(exec.stderr, logger);
    rpc = new RpcClient(exec.stdout, exec.stdin, {
      expectedBuildId: bundle.buildId,
      timeoutMs: options.requestTimeout * 1000,
      onTrace: options.debug
        ? (e) =>
          logger.debug(
            `rpc ${e.id} ${e.method} ${
              e.result.ok ? "ok" : `${e.result.code} (${e.result.message})`
            }`,
          )
        : undefined,
    });
    try {
      const hello = await withTimeout(rpc.ready, HANDSHAKE_TIMEOUT_MS, "the satellite handshake");
      logger.info(
        `Satellite ready in '${container.name}' (${hello.arch}, pid ${hello.pid}, uid ${hello.uid}) ` +
          `after ${Math.round(performance.now() - started)} ms`,
      );
    } catch (error) {
      const tail = stderrTail();
      throw new MountError(
        "satellite",
        `Cannot start the satellite in '${container.name}': ${(error as Error).message}` +
          (tail ? `\nsatellite stderr:\n${tail}` : ""),
      );
    }
    const fs = new ContainerFs(rpc.call, {
      attrTimeout: options.attrTimeout,
      entryTimeout: options.entryTimeout,
      hostArch: Deno.build.arch,
      writebackCache: options.writebackCache,
      writeBehind: options.syncWrites !== true,
      logger,
    });
    try {
      fuse = await mount(fs, options.mountpoint, {
        fsName: fsNameFor(container),
        subtype: "dockerfuse",
        readOnly: options.readOnly,
        allowOther: options.allowOther,
        allowNonEmpty: options.nonEmpty,
        entryTimeout: options.entryTimeout,
        attrTimeout: options.attrTimeout,
        negativeTimeout: options.negativeTimeout,
        writebackCache: options.writebackCache,
        logger,
        debug: options.debug,
      });
      await Deno.stat(options.mountpoint); // the mount answers
    } catch (error) {
      throw new MountError("mountpoint", (error as Error).message);
    }
    const readyMs = Math.round(performance.now() - started);
    logger.info(
      `Mounted '${container.name}:${options.path}' on '${options.mountpoint}' in ${readyMs} ms`,
    );
    return live(
      container,
      options.mountpoint,
      readyMs,
      engine,
      fuse,
      rpc,
      exec,
      stderrTail,
      logger,
      teardown,
    );
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

function live(
  container: ContainerInfo,
  mountpoint: string,
  readyMs: number,
  engine: Engine,
  fuse: FuseSession,
  rpc: RpcClient,
  exec: ExecSession,
  stderrTail: () => string,
  logger: Logger,
  teardown: () => Promise<void>,
): ContainerMount {
  let closing = false;
  const ending = Promise.race([
    fuse.closed.then((): MountEnding => ({ kind: "unmounted" })),
    rpc.closed.then((info): MountEnding => ({ kind: "lost", reason: info.reason })),
    exec.exited.then((r): MountEnding => ({
      kind: "lost",
      reason: `exec ended with code ${r.code ?? "unknown"}`,
    })),
  ]);
  const ended = ending.then(async (end): Promise<MountEnding> => {
    if (closing) return { kind: "closed" };
    if (end.kind === "lost") {
      const tail = stderrTail().split("\n").pop();
      const why = await whyLost(engine, container);
      end = {
        kind: "lost",
        reason: why ?? `the satellite ended (${end.reason})${tail ? `: ${tail}` : ""}`,
      };
    }
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
