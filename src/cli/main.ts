/**
 * The dockerfuse command: parses the command line, runs the subcommand, maps failures to the
 * documented exit codes. The only module that touches Deno.args, signals and process exit.
 *
 * @module
 */

// Only what parsing and every subcommand need is imported here; each subcommand's own layers
// are loaded once it is chosen (a mount does not wait for the engine tree or the plugin).
import { PROTOCOL_VERSION } from "../protocol/methods.ts";
import type { ContainerMountOptions } from "../mount/options.ts";
import { parseArgs } from "./args.ts";
import { CliError, ExitCode } from "./exit_codes.ts";
import { createLogger } from "./log.ts";
import { cliRunArgs } from "./launch.ts";
import type { EngineDeps } from "./engine.ts";
import { mountOptions } from "../mount/options.ts";
import { progressBar } from "./progress.ts";

/** dockerfuse's own version. */
export const VERSION = "0.1.0";

/** Set in the background child of `--daemon`; it serves in the foreground of its own session. */
const DAEMON_CHILD_ENV = "DOCKERFUSE_DAEMON_CHILD";

function bundleRoot(): string {
  return new URL("../../dist/satellite", import.meta.url).pathname;
}

/**
 * From a source checkout, (re)builds the satellite for an architecture before mounting (about
 * 0.1 s when up to date), so the bundle always matches the protocol. A compiled executable, or
 * an installation without the build tasks (the container image), uses the bundles it carries.
 */
function bundleBuilder(): ((arch: string) => Promise<void>) | undefined {
  if (Deno.build.standalone) return undefined;
  const script = new URL("../../tasks/build_satellite.ts", import.meta.url).pathname;
  try {
    Deno.statSync(script);
  } catch {
    return undefined;
  }
  return async (arch) => {
    if (bundleNewerThanSources(arch)) return;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, "--arch", arch],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(new TextDecoder().decode(out.stderr).trim() || `exit code ${out.code}`);
    }
  };
}

/** What a satellite bundle is built from, relative to the checkout's root. */
const BUNDLE_SOURCES = [
  "satellite",
  "src/protocol",
  "src/linux",
  "tasks/satellite",
  "tasks/build_satellite.ts",
  "deno.json",
  "package-lock.json",
];

/**
 * True when the bundle's manifest is newer than every source it is built from (the build
 * touches it when it finds the bundle current): the build's own check, a process start
 * (0.15-0.25 s), is then skipped. Any doubt answers false.
 */
function bundleNewerThanSources(arch: string): boolean {
  const root = new URL("../../", import.meta.url).pathname;
  const newest = (path: string): number => {
    const info = Deno.statSync(path);
    let t = info.mtime?.getTime() ?? Infinity;
    if (info.isDirectory) {
      for (const e of Deno.readDirSync(path)) t = Math.max(t, newest(`${path}/${e.name}`));
    }
    return t;
  };
  try {
    const built = Deno.statSync(`${bundleRoot()}/${arch}/manifest.json`).mtime?.getTime();
    if (built === undefined) return false;
    return BUNDLE_SOURCES.every((s) => newest(`${root}${s}`) < built);
  } catch {
    return false;
  }
}

/** Argv that re-runs this program (from source or as a compiled executable). */
function selfCommand(args: readonly string[]): string[] {
  if (Deno.build.standalone) return [...args];
  return cliRunArgs(args);
}

/**
 * `--daemon`: start the same command line in a detached child, wait until it reports the mount
 * ready (one line on its stdout), then return. The child logs to a file.
 */
async function daemonize(
  args: readonly string[],
  options: ContainerMountOptions,
): Promise<number> {
  const log = await Deno.makeTempFile({ prefix: "dockerfuse-", suffix: ".log" });
  const file = await Deno.open(log, { write: true, append: true });
  const child = new Deno.Command(Deno.execPath(), {
    args: selfCommand(args),
    env: { [DAEMON_CHILD_ENV]: log },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
    detached: true,
  }).spawn();
  file.close();
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  reader.releaseLock();
  if (text.startsWith("ready")) {
    child.unref();
    console.error(
      `Mounted '${options.container}' on '${options.mountpoint}' (pid ${child.pid}, log ${log}). ` +
        `Unmount with: dockerfuse unmount ${options.mountpoint}`,
    );
    return ExitCode.Ok;
  }
  const status = await child.status;
  const logText = await Deno.readTextFile(log).catch(() => "");
  console.error(logText.trimEnd() || `The background dockerfuse exited with ${status.code}`);
  return status.code || ExitCode.Internal;
}

/**
 * Buffers up to 4 MiB (1 MiB requests and frames) come from the heap: fresh mmap'd ones cost a
 * page fault per 4 KiB on first touch (writing 256 MiB: client CPU 0.72 s with a 256 KiB
 * threshold, 0.42 s with this one). A fixed threshold, as glibc would otherwise keep raising it;
 * a periodic malloc_trim hands the freed heap back (RSS after a 256 MiB write and read: 164 MB
 * without it, like the 122 MB with mmap'd buffers with it).
 */
function tuneAllocator(): void {
  try {
    const libc = Deno.dlopen("libc.so.6", {
      mallopt: { parameters: ["i32", "i32"], result: "i32" },
      malloc_trim: { parameters: ["usize"], result: "i32" },
    });
    libc.symbols.mallopt(-3, /* M_MMAP_THRESHOLD */ 4 * 1024 * 1024);
    const timer = setInterval(() => libc.symbols.malloc_trim(0n), TRIM_EVERY_MS);
    Deno.unrefTimer(timer);
  } catch {
    // Not glibc: nothing to tune.
  }
}

/** How often freed heap memory is handed back to the system. */
const TRIM_EVERY_MS = 5_000;

/**
 * `mount` and `engine` after parsing: with `--daemon` (and not yet the background child) starts
 * the same command line in the background, announced with `daemonOptions`; otherwise serves the
 * mount in this process, logging to stderr (the child: to its log file) and stopping on
 * SIGINT, SIGTERM or SIGHUP.
 */
async function serveHere(
  args: readonly string[],
  invocation: { daemon: boolean; logFormat: "text" | "json" },
  debug: boolean,
  daemonOptions: ContainerMountOptions,
  serve: (deps: EngineDeps, daemonLog: string | undefined) => Promise<ExitCode>,
): Promise<number> {
  tuneAllocator();
  const daemonLog = Deno.env.get(DAEMON_CHILD_ENV);
  if (invocation.daemon && daemonLog === undefined) return await daemonize(args, daemonOptions);
  const sink = daemonLog === undefined
    ? Deno.stderr
    : Deno.openSync(daemonLog, { write: true, append: true });
  const logger = createLogger({ format: invocation.logFormat, debug, sink });
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    Deno.addSignalListener(signal, onSignal);
  }
  return await serve({
    env: Deno.env.toObject(),
    logger,
    stop: stop.signal,
    bundleRoot: bundleRoot(),
    prepareBundle: bundleBuilder(),
    onReady: () => {
      if (daemonLog !== undefined) {
        Deno.stdout.writeSync(new TextEncoder().encode("ready\n"));
      }
    },
  }, daemonLog);
}

async function main(args: readonly string[]): Promise<number> {
  const invocation = await parseArgs(args);
  switch (invocation.kind) {
    case "help":
      console.log(invocation.text);
      return invocation.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    case "usage-error":
      console.error(invocation.text);
      return ExitCode.Usage;
    case "version":
      if (invocation.json) {
        console.log(
          JSON.stringify({ version: VERSION, protocol: PROTOCOL_VERSION, deno: Deno.version.deno }),
        );
      } else {
        console.log(
          `dockerfuse ${VERSION} (protocol ${PROTOCOL_VERSION}, Deno ${Deno.version.deno})`,
        );
      }
      return ExitCode.Ok;
    case "unmount": {
      const { runUnmount } = await import("./mount.ts");
      return await runUnmount(
        invocation.mountpoint,
        createLogger({ format: "text", debug: false }),
      );
    }
    case "prune": {
      const { runPrune } = await import("./prune.ts");
      return await runPrune(Deno.env.toObject(), createLogger({ format: "text", debug: false }));
    }
    case "volume-plugin": {
      const { options } = invocation;
      const { runVolumePlugin } = await import("../plugin/mod.ts");
      const stop = new AbortController();
      for (const signal of ["SIGINT", "SIGTERM"] as const) {
        Deno.addSignalListener(signal, () => stop.abort());
      }
      const served = await runVolumePlugin(options, {
        env: Deno.env.toObject(),
        logger: createLogger({ format: options.logFormat, debug: options.debug }),
        bundleRoot: bundleRoot(),
        stop: stop.signal,
      });
      return served ? ExitCode.Ok : ExitCode.Internal;
    }
    case "engine": {
      const { options } = invocation;
      const { runEngine } = await import("./engine.ts");
      return await serveHere(
        args,
        invocation,
        options.debug,
        mountOptions("the engine", options.mountpoint),
        (deps) => runEngine(options, deps),
      );
    }
    case "mount": {
      const { options } = invocation;
      const { runMount } = await import("./mount.ts");
      return await serveHere(
        args,
        invocation,
        options.debug,
        options,
        (deps, daemonLog) =>
          runMount(options, {
            ...deps,
            onProgress: daemonLog === undefined && Deno.stderr.isTerminal()
              ? progressBar()
              : undefined,
          }),
      );
    }
  }
}

if (import.meta.main) {
  // `deno task` runs in the project folder; relative paths mean the caller's folder.
  const initCwd = Deno.env.get("INIT_CWD");
  if (initCwd) Deno.chdir(initCwd);
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    const message = error instanceof CliError
      ? error.message
      : `dockerfuse: unexpected error: ${(error as Error)?.stack ?? error}`;
    code = error instanceof CliError ? error.exitCode : ExitCode.Internal;
    console.error(message);
    const daemonLog = Deno.env.get(DAEMON_CHILD_ENV);
    if (daemonLog !== undefined) {
      await Deno.writeTextFile(daemonLog, message + "\n", { append: true }).catch(() => {});
    }
  }
  Deno.exit(code);
}
