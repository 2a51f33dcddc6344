/**
 * `dockerfuse mount`: engine → container → satellite → RPC → FUSE mount, then serve until a
 * signal, an external unmount, or the container/satellite going away.
 *
 * Invariant: whatever ends the session, the mount is removed before the process exits, so no
 * "Transport endpoint is not connected" is left behind.
 *
 * @module
 */

import {
  connectEngine,
  type ContainerInfo,
  deploySatellite,
  DockerError,
  type Engine,
  type ExecSession,
  readManifest,
} from "../docker/mod.ts";
import { ContainerFs } from "../fs/mod.ts";
import {
  type FuseSession,
  inspectMountpoint,
  type Logger,
  mount,
  recoverStaleMount,
  unmount,
} from "../fuse/mod.ts";
import { RpcClient } from "../protocol/mod.ts";
import type { MountOptions } from "./args.ts";
import { CliError, ExitCode } from "./exit_codes.ts";

/** What `runMount` needs from its surroundings (injected for tests). */
export interface MountDeps {
  env: Record<string, string | undefined>;
  logger: Logger;
  /** Aborted when the user asks to stop (SIGINT/SIGTERM). */
  stop: AbortSignal;
  /** Folder holding `<arch>/manifest.json` satellite bundles. */
  bundleRoot: string;
  /** Called once the mount answers requests. */
  onReady?: (mountpoint: string) => void;
  /** Shows upload progress (a TTY progress bar), if any. */
  onProgress?: (sent: number, total: number) => void;
}

const SUPPORTED_ARCHES = ["x86_64", "aarch64"];
const STDERR_TAIL = 4096;
const HANDSHAKE_TIMEOUT_MS = 60_000;

function dockerExit(error: DockerError): ExitCode {
  switch (error.code) {
    case "config":
    case "unreachable":
      return ExitCode.EngineUnreachable;
    case "not-found":
    case "not-running":
      return ExitCode.ContainerUnavailable;
    default:
      return ExitCode.SatelliteFailed;
  }
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

async function prepareMountpoint(options: MountOptions, logger: Logger): Promise<void> {
  const where = options.mountpoint;
  let state;
  try {
    state = await inspectMountpoint(where);
  } catch (error) {
    throw new CliError(ExitCode.MountFailed, (error as Error).message);
  }
  switch (state) {
    case "missing":
      throw new CliError(
        ExitCode.MountFailed,
        `Cannot mount '${where}': no such directory (create it with mkdir)`,
      );
    case "not-directory":
      throw new CliError(ExitCode.MountFailed, `Cannot mount '${where}': not a directory`);
    case "mounted":
      throw new CliError(
        ExitCode.MountFailed,
        `Cannot mount '${where}': something is already mounted there (dockerfuse unmount ${where})`,
      );
    case "non-empty":
      if (!options.nonEmpty) {
        throw new CliError(
          ExitCode.MountFailed,
          `Cannot mount '${where}': the directory is not empty (use --nonempty to mount over it)`,
        );
      }
      return;
    case "stale":
      try {
        await recoverStaleMount(where);
      } catch (error) {
        throw new CliError(ExitCode.MountFailed, (error as Error).message);
      }
      logger.warn(`Recovered a stale mount left at '${where}' by an earlier run`);
      return;
    case "empty":
      return;
  }
}

async function openEngine(deps: MountDeps): Promise<Engine> {
  try {
    return await connectEngine({ env: deps.env, home: deps.env.HOME });
  } catch (error) {
    if (error instanceof DockerError) throw new CliError(dockerExit(error), error.message);
    throw error;
  }
}

async function findContainer(engine: Engine, name: string): Promise<ContainerInfo> {
  let info: ContainerInfo;
  try {
    info = await engine.inspectContainer(name);
  } catch (error) {
    if (error instanceof DockerError) throw new CliError(dockerExit(error), error.message);
    throw error;
  }
  if (!SUPPORTED_ARCHES.includes(info.arch)) {
    throw new CliError(
      ExitCode.UnsupportedArchitecture,
      `Cannot mount '${name}': its architecture '${info.arch}' is not supported ` +
        `(supported: amd64, arm64)`,
    );
  }
  return info;
}

async function bundleDir(deps: MountDeps, arch: string): Promise<{ dir: string; buildId: string }> {
  const dir = `${deps.bundleRoot}/${arch}`;
  try {
    const manifest = await readManifest(dir);
    return { dir, buildId: manifest.buildId };
  } catch (error) {
    throw new CliError(
      ExitCode.SatelliteFailed,
      `Cannot find the ${arch} satellite in '${dir}': ${(error as Error).message} ` +
        `(run 'deno task build-satellite')`,
    );
  }
}

/** Why the session ended, as decided by `serve`. */
type Ending =
  | { kind: "signal" }
  | { kind: "unmounted" }
  | { kind: "lost"; reason: string };

/** Mounts per `options` and serves until the end; returns the exit code. */
export async function runMount(options: MountOptions, deps: MountDeps): Promise<ExitCode> {
  const { logger } = deps;
  await prepareMountpoint(options, logger);
  const engine = await openEngine(deps);
  let exec: ExecSession | undefined;
  let rpc: RpcClient | undefined;
  let fuse: FuseSession | undefined;
  try {
    const container = await findContainer(engine, options.container);
    const bundle = await bundleDir(deps, container.arch);
    const started = performance.now();
    try {
      exec = await deploySatellite(engine, container, bundle.dir, {
        root: options.path,
        user: options.user,
        onProgress: deps.onProgress,
      });
    } catch (error) {
      if (error instanceof DockerError) throw new CliError(dockerExit(error), error.message);
      throw error;
    }
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
      throw new CliError(
        ExitCode.SatelliteFailed,
        `Cannot start the satellite in '${container.name}': ${(error as Error).message}` +
          (tail ? `\nsatellite stderr:\n${tail}` : ""),
      );
    }
    const fs = new ContainerFs(rpc.call, {
      attrTimeout: options.attrTimeout,
      entryTimeout: options.entryTimeout,
      hostArch: Deno.build.arch,
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
    } catch (error) {
      throw new CliError(ExitCode.MountFailed, (error as Error).message);
    }
    await Deno.stat(options.mountpoint); // the mount answers
    logger.info(
      `Mounted '${container.name}:${options.path}' on '${options.mountpoint}' in ` +
        `${Math.round(performance.now() - started)} ms`,
    );
    deps.onReady?.(options.mountpoint);

    const ending = await serve(deps.stop, fuse, rpc, exec);
    if (ending.kind === "lost") {
      const running = await engine.inspectContainer(container.id).then(
        (c) => c.running,
        () => false,
      );
      const tail = stderrTail();
      const why = running
        ? `the satellite ended (${ending.reason})${tail ? `: ${tail.split("\n").pop()}` : ""}`
        : `container '${container.name}' stopped`;
      await fuse.unmount({ lazy: true }).catch(() => {});
      throw new CliError(ExitCode.ConnectionLost, `Unmounted '${options.mountpoint}': ${why}`);
    }
    if (ending.kind === "signal") {
      logger.info(`Unmounting '${options.mountpoint}'`);
      await unmountGracefully(fuse, options.mountpoint, logger);
    } else {
      logger.info(`'${options.mountpoint}' was unmounted`);
    }
    return ExitCode.Ok;
  } finally {
    if (fuse) await fuse.unmount({ lazy: true }).catch(() => {});
    if (rpc) await rpc.close("the mount ended").catch(() => {});
    exec?.kill();
    engine.close();
  }
}

/** Waits for whichever ends the session first. */
async function serve(
  stop: AbortSignal,
  fuse: FuseSession,
  rpc: RpcClient,
  exec: ExecSession,
): Promise<Ending> {
  const stopped = new Promise<Ending>((resolve) => {
    if (stop.aborted) resolve({ kind: "signal" });
    stop.addEventListener("abort", () => resolve({ kind: "signal" }), { once: true });
  });
  return await Promise.race([
    stopped,
    fuse.closed.then((): Ending => ({ kind: "unmounted" })),
    rpc.closed.then((info): Ending => ({ kind: "lost", reason: info.reason })),
    exec.exited.then((r): Ending => ({
      kind: "lost",
      reason: `exec ended with code ${r.code ?? "unknown"}`,
    })),
  ]);
}

/** Unmount: a plain unmount first (all data reaches the satellite), lazy when busy. */
async function unmountGracefully(fuse: FuseSession, where: string, logger: Logger): Promise<void> {
  try {
    await fuse.unmount({ lazy: false });
  } catch (error) {
    logger.warn(`'${where}' is busy (${(error as Error).message}); unmounting lazily`);
    await fuse.unmount({ lazy: true });
  }
}

/** `dockerfuse unmount`: unmounts (lazily if busy), also a stale mount. */
export async function runUnmount(mountpoint: string, logger: Logger): Promise<ExitCode> {
  let state;
  try {
    state = await inspectMountpoint(mountpoint);
  } catch (error) {
    throw new CliError(ExitCode.MountFailed, (error as Error).message);
  }
  if (state !== "mounted" && state !== "stale") {
    throw new CliError(ExitCode.MountFailed, `Cannot unmount '${mountpoint}': not mounted`);
  }
  try {
    await unmount(mountpoint, { lazy: state === "stale" });
  } catch (error) {
    logger.warn(`${(error as Error).message}; unmounting lazily`);
    try {
      await unmount(mountpoint, { lazy: true });
    } catch (lazyError) {
      throw new CliError(ExitCode.MountFailed, (lazyError as Error).message);
    }
  }
  logger.info(`Unmounted '${mountpoint}'${state === "stale" ? " (it was stale)" : ""}`);
  return ExitCode.Ok;
}
