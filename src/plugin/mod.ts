/**
 * `dockerfuse volume-plugin`: a Docker volume plugin (legacy discovery through a unix socket in
 * /run/docker/plugins) whose volumes are the filesystems of running containers.
 *
 * Invariants:
 * - While serving, the socket answers; after `stop` is aborted every mount is closed (lazily if
 *   busy) and the socket file is removed, before `runVolumePlugin` resolves.
 * - Volume definitions survive restarts (`<state-dir>/volumes.json`); volumes that callers had
 *   mounted are mounted again on start.
 * - Only root reaches what the plugin serves. The state directory and its `volumes` directory
 *   (the mountpoints' parent) are 0700, also when they existed before; the mounts are
 *   `allow_other` for the containers that bind them, but no other host user can get to them.
 *   The socket is 0600, bound in a private directory and renamed into place: connect(2) needs
 *   write permission on it, so only root (or CAP_DAC_OVERRIDE) ever talks to the plugin. (Deno
 *   gives no descriptor of accepted connections, so SO_PEERCRED cannot be asked; 0660 would
 *   also let group root in.)
 *
 * @module
 */

import type { Logger } from "../fuse/mod.ts";
import { mountContainer } from "../mount/mod.ts";
import { type MountFunction, VolumeDriver } from "./driver.ts";
import { handlePluginRequest } from "./http.ts";
import { JsonFileStore } from "./store.ts";
import type { VolumePluginOptions } from "./options.ts";

export {
  type LiveMount,
  type MountFunction,
  VolumeDriver,
  type VolumeDriverDeps,
  VolumeError,
  type VolumeInfo,
} from "./driver.ts";
export { handlePluginRequest, PLUGIN_CONTENT_TYPE } from "./http.ts";
export { DEFAULT_PLUGIN_SOCKET, DEFAULT_STATE_DIR, type VolumePluginOptions } from "./options.ts";
export { JsonFileStore, parseStore, type VolumeRecord, type VolumeStore } from "./store.ts";

/** How long a stopping plugin lets requests in flight finish. */
const SHUTDOWN_GRACE_MS = 2000;

/** Surroundings of the plugin (injected). */
export interface VolumePluginDeps {
  env: Record<string, string | undefined>;
  logger: Logger;
  /** Folder holding `<arch>/manifest.json` satellite bundles. */
  bundleRoot: string;
  /** Aborted on SIGINT/SIGTERM. */
  stop: AbortSignal;
  /** Replaces `mountContainer` (tests). */
  mount?: MountFunction;
  now?: () => Date;
}

function dirname(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** Removes a socket file left by an earlier run; refuses if something still answers on it. */
async function claimSocket(path: string): Promise<void> {
  try {
    await Deno.lstat(path);
  } catch {
    return;
  }
  let answered = false;
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    answered = true;
  } catch { /* nobody listens: a leftover */ }
  if (answered) throw new Error(`another process is serving '${path}'`);
  await Deno.remove(path);
}

/**
 * Makes `dir` (and missing parents) and leaves it 0700: a directory that existed with a wider
 * mode is narrowed. Refuses a directory owned by another user (it could be swapped under us).
 */
async function ensurePrivateDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.lstat(dir);
  if (!info.isDirectory) throw new Error(`'${dir}' is not a directory`);
  if (info.uid !== null && info.uid !== Deno.uid()) {
    throw new Error(`'${dir}' belongs to uid ${info.uid}, not to this process`);
  }
  if (info.mode !== null && (info.mode & 0o7777) !== 0o700) await Deno.chmod(dir, 0o700);
}

/**
 * Serves on `path` through a socket bound in a fresh 0700 directory next to it, made 0600 and
 * renamed into place: at no moment can another user connect (whatever the umask).
 */
async function servePrivately(
  path: string,
  handler: (request: Request) => Response | Promise<Response>,
): Promise<Deno.HttpServer<Deno.UnixAddr>> {
  const dir = dirname(path);
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  const staging = await Deno.makeTempDir({ dir, prefix: ".dockerfuse-sock-" }); // 0700
  const bound = `${staging}/s`;
  let server: Deno.HttpServer<Deno.UnixAddr> | undefined;
  try {
    server = Deno.serve({ path: bound, onListen: () => {} }, handler);
    await Deno.chmod(bound, 0o600);
    await Deno.rename(bound, path);
    return server;
  } catch (error) {
    await server?.shutdown().catch(() => {});
    throw error;
  } finally {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
}

/** Removes the socket file unless another instance has replaced it meanwhile. */
async function removeOwnSocket(path: string, ino: number | null): Promise<void> {
  try {
    if ((await Deno.lstat(path)).ino === ino) await Deno.remove(path);
  } catch { /* already gone */ }
}

/** Serves the plugin until `deps.stop` is aborted; false when it could not start. */
export async function runVolumePlugin(
  options: VolumePluginOptions,
  deps: VolumePluginDeps,
): Promise<boolean> {
  const { logger } = deps;
  const driverName = options.socket.slice(options.socket.lastIndexOf("/") + 1)
    .replace(/\.sock$/, "");
  let driver: VolumeDriver;
  let server: Deno.HttpServer<Deno.UnixAddr>;
  let socketIno: number | null;
  try {
    await ensurePrivateDir(options.stateDir);
    await ensurePrivateDir(`${options.stateDir}/volumes`);
    driver = await VolumeDriver.open({
      store: new JsonFileStore(`${options.stateDir}/volumes.json`),
      mount: deps.mount ??
        ((o) => mountContainer(o, { env: deps.env, logger, bundleRoot: deps.bundleRoot })),
      volumesDir: `${options.stateDir}/volumes`,
      now: deps.now ?? (() => new Date()),
      logger,
      debug: options.debug,
    });
    await claimSocket(options.socket);
    server = await servePrivately(
      options.socket,
      (request) => handlePluginRequest(driver, request, logger),
    );
    socketIno = (await Deno.lstat(options.socket)).ino;
  } catch (error) {
    logger.error(`Cannot start the volume plugin: ${(error as Error).message}`);
    return false;
  }
  logger.info(
    `Volume plugin '${driverName}' serving on '${options.socket}' ` +
      `(state in '${options.stateDir}', ${driver.list().length} volume(s))`,
  );
  const restored = driver.restore();
  await new Promise<void>((resolve) => {
    if (deps.stop.aborted) resolve();
    deps.stop.addEventListener("abort", () => resolve(), { once: true });
  });
  logger.info("Stopping: unmounting every volume");
  // Requests in flight may finish, within bounds.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    server.shutdown().catch(() => {}),
    new Promise((resolve) => timer = setTimeout(resolve, SHUTDOWN_GRACE_MS)),
  ]);
  clearTimeout(timer);
  await restored;
  await driver.shutdown();
  await removeOwnSocket(options.socket, socketIno);
  logger.info("Volume plugin stopped");
  return true;
}
