/**
 * Sidecar deployment: the satellite runs in a helper container from the satellite image, in the
 * target's PID namespace (`--pid container:TARGET`), and serves the target's filesystem through
 * `/proc/1/root`. Nothing is written into the target.
 *
 * Invariants:
 * - The helper has no network, a read-only root, no-new-privileges, and SYS_PTRACE only when the
 *   target's main process runs as a non-root user (reading another user's /proc/1/root needs
 *   it). A target sharing another PID namespace (`--pid host|container:`) is refused: its
 *   /proc/1 would be another process's root.
 * - It is auto-removed and stops when its stdin closes (the client ends, or is killed: the
 *   attach stream closes and StdinOnce closes stdin), and the kernel kills it with the target's
 *   PID namespace when the target stops. A helper that fails to start is removed here.
 *
 * @module
 */

import type { ContainerInfo } from "./engine.ts";
import { DockerError, errorMessage } from "./errors.ts";
import { createExecSession, type ExecSession, type ExecState } from "./exec.ts";
import { type EngineApi, responseJson, responseMessage } from "./http.ts";
import type { SatelliteManifest } from "./satellite.ts";
import { IMAGE_DIR } from "./satellite_image.ts";
import { closeQuietly } from "./transport.ts";
import { randomHex } from "./bytes.ts";

/** Label on every helper container: the id of the container it serves. */
export const LABEL_SIDECAR = "dev.dockerfuse.sidecar.target";
/** The helper's open-files limit (soft and hard). */
export const HELPER_NOFILE = 16384;
/** The helper's process limit (soft and hard). */
export const HELPER_NPROC = 4096;
/** Where the helper sees the target's root (the target's PID 1 is its PID 1). */
export const TARGET_ROOT = "/proc/1/root";

export interface SidecarOptions {
  /** directory inside the target that becomes the root of the mount */
  root: string;
  /**
   * image reference of the satellite (SatelliteImages.ensure); a promise of it is awaited only
   * once the target is inspected (over a remote engine's round trip, both at once)
   */
  image: string | Promise<string>;
  /** overrides the random part of the helper's name (tests) */
  randomName?: () => string;
  /** told the helper's name once it runs */
  log?: (message: string) => void;
}

/** True when the container's configured user is not root (then /proc/1/root needs SYS_PTRACE). */
export function needsPtrace(user: string | undefined): boolean {
  const name = (user ?? "").split(":")[0];
  return name !== "" && name !== "root" && name !== "0";
}

/** The helper's create request (`docker create` body), from the manifest and the target. */
export function sidecarConfig(
  manifest: SatelliteManifest,
  target: { id: string; user?: string },
  options: { root: string; image: string },
): Record<string, unknown> {
  const argv = manifest.loaderCommand.map((arg) => arg.replaceAll("{dir}", IMAGE_DIR));
  argv.push("--root", options.root, "--root-in", TARGET_ROOT);
  const env = Object.entries(manifest.env).map(([key, value]) =>
    `${key}=${value.replaceAll("{dir}", IMAGE_DIR)}`
  );
  return {
    Image: options.image,
    Entrypoint: [argv[0]],
    Cmd: argv.slice(1),
    Env: env,
    User: "0:0",
    WorkingDir: "/",
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: true,
    StdinOnce: true,
    Tty: false,
    NetworkDisabled: true,
    Labels: { [LABEL_SIDECAR]: target.id },
    HostConfig: {
      PidMode: `container:${target.id}`,
      NetworkMode: "none",
      AutoRemove: true,
      // The RPC travels on stdout: no log driver may copy it (json-file wrote every byte read
      // through the mount to disk and cut reads to a sixth, measured).
      LogConfig: { Type: "none", Config: {} },
      ReadonlyRootfs: true,
      SecurityOpt: ["no-new-privileges"],
      CapAdd: needsPtrace(target.user) ? ["SYS_PTRACE"] : [],
      // Its own limits rather than the engine's defaults, which Podman 4.3 cannot apply under
      // lower hard limits (measured). Open files: ample for the satellite's handles; processes:
      // root in the initial user namespace is exempt from it anyway.
      Ulimits: [
        { Name: "nofile", Soft: HELPER_NOFILE, Hard: HELPER_NOFILE },
        { Name: "nproc", Soft: HELPER_NPROC, Hard: HELPER_NPROC },
      ],
    },
  };
}

/** What the helper's confinement depends on, from the target's inspect. */
export interface TargetInfo {
  /** Config.User; "" when none */
  user: string;
  /** HostConfig.PidMode; "" or "private" when the target has its own PID namespace */
  pidMode: string;
  /** State.Pid: the main process's pid as the engine's host sees it */
  hostPid: number;
}

export async function inspectTarget(api: EngineApi, containerId: string): Promise<TargetInfo> {
  const response = await api.request("GET", `/containers/${encodeURIComponent(containerId)}/json`);
  if (response.status === 404) {
    throw new DockerError(
      "not-found",
      `Cannot use container ${containerId.slice(0, 12)}: no such container`,
    );
  }
  if (response.status !== 200) {
    throw new DockerError(
      "api",
      `Cannot inspect container ${containerId.slice(0, 12)}: ${responseMessage(response)}`,
    );
  }
  const info = responseJson(response, "inspect the container") as {
    Config?: { User?: unknown };
    HostConfig?: { PidMode?: unknown };
    State?: { Pid?: unknown };
  };
  return {
    user: typeof info.Config?.User === "string" ? info.Config.User : "",
    pidMode: typeof info.HostConfig?.PidMode === "string" ? info.HostConfig.PidMode : "",
    hostPid: typeof info.State?.Pid === "number" ? info.State.Pid : 0,
  };
}

/**
 * The user of the target's main process (the helper's /proc/1), from the engine's `top`:
 * an entrypoint may drop root (gosu, su-exec) whatever Config.User says. Docker runs ps on the
 * host (`-o pid,uid`, host pids); Podman takes its own descriptors (`pid,user`, container pids).
 * Undefined when neither answers.
 */
export async function mainProcessUser(
  api: EngineApi,
  containerId: string,
  hostPid: number,
): Promise<string | undefined> {
  const attempts: { args: string; pid: string }[] = [
    { args: "-o pid,uid", pid: String(hostPid) },
    { args: "pid,user", pid: "1" },
  ];
  for (const { args, pid } of attempts) {
    const response = await api.request(
      "GET",
      `/containers/${encodeURIComponent(containerId)}/top?ps_args=${encodeURIComponent(args)}`,
    ).catch(() => undefined);
    if (response === undefined || response.status !== 200) continue;
    let top: { Titles?: unknown; Processes?: unknown };
    try {
      top = responseJson(response, "list the container's processes") as typeof top;
    } catch {
      continue;
    }
    if (!Array.isArray(top.Titles) || !Array.isArray(top.Processes)) continue;
    const pidAt = top.Titles.indexOf("PID");
    const userAt = top.Titles.findIndex((t) => t === "UID" || t === "USER");
    if (pidAt < 0 || userAt < 0) continue;
    const row = (top.Processes as unknown[][]).find((p) => String(p[pidAt]) === pid);
    if (row !== undefined) return String(row[userAt]);
  }
  return undefined;
}

/**
 * Creates the helper, attaches to it, starts it; returns its stdio as an exec-like session.
 * Throws DockerError ("api" when the engine refuses, e.g. no `--pid container:` support); a
 * helper created before the failure is removed.
 */
export async function startSidecar(
  api: EngineApi,
  container: ContainerInfo,
  manifest: SatelliteManifest,
  options: SidecarOptions,
): Promise<ExecSession> {
  // At once (each a round trip to a remote engine), the main process's user asked for by the
  // pid the container had when found; all settle before anything is reported (no image load
  // goes on behind a refusal).
  const knownPid = container.pid ?? 0;
  const [inspected, imaged, early] = await Promise.allSettled([
    inspectTarget(api, container.id),
    options.image,
    knownPid > 0 ? mainProcessUser(api, container.id, knownPid) : Promise.resolve(undefined),
  ]);
  if (inspected.status === "rejected") throw inspected.reason;
  if (imaged.status === "rejected") throw imaged.reason;
  const target = inspected.value;
  const image = imaged.value;
  // /proc/1 must be the target's own init: in a shared PID namespace it belongs to another.
  if (target.pidMode !== "" && target.pidMode !== "private") {
    throw new DockerError(
      "unsupported",
      `Cannot run the satellite beside '${container.name}': it shares the PID namespace ` +
        `'${target.pidMode}', so its processes are not the helper's view of it`,
    );
  }
  // Restarted since it was found: asked again for its new main process.
  const mainUser = knownPid === target.hostPid && early.status === "fulfilled"
    ? early.value
    : await mainProcessUser(api, container.id, target.hostPid);
  const user = mainUser ?? target.user;
  const config = sidecarConfig(manifest, { id: container.id, user }, { ...options, image });
  const name = `dockerfuse-${container.name.replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 40)}-${
    (options.randomName ?? (() => randomHex(4)))()
  }`.replace(/^dockerfuse--/, "dockerfuse-");
  const what = `start the satellite helper for '${container.name}'`;
  const created = await api.request("POST", `/containers/create?name=${encodeURIComponent(name)}`, {
    json: config,
  });
  if (created.status !== 201 && created.status !== 200) {
    throw new DockerError(
      created.status === 404 ? "bundle" : "api",
      `Cannot ${what}: ${responseMessage(created)}`,
    );
  }
  const id = String((responseJson(created, what) as { Id?: unknown }).Id ?? "");
  if (id === "") throw new DockerError("protocol", `Cannot ${what}: the engine named no container`);
  const remove = async (): Promise<void> => {
    await api.request("DELETE", `/containers/${id}?force=1&v=1`).catch(() => {});
  };
  let attached: Awaited<ReturnType<EngineApi["upgrade"]>> | undefined;
  try {
    // Attach before start, so no output is missed.
    attached = await api.upgrade(
      `/containers/${id}/attach?stream=1&stdin=1&stdout=1&stderr=1`,
    );
    const started = await api.request("POST", `/containers/${id}/start`);
    if (started.status !== 204 && started.status !== 304) {
      throw new DockerError("api", `Cannot ${what}: ${responseMessage(started)}`);
    }
  } catch (error) {
    if (attached) closeQuietly(attached.conn);
    await remove();
    if (error instanceof DockerError) {
      throw error.message.startsWith("Cannot ") ? error : new DockerError(
        error.code,
        `Cannot ${what}: ${error.message}`,
        { cause: error },
      );
    }
    throw new DockerError("api", `Cannot ${what}: ${errorMessage(error)}`, { cause: error });
  }
  options.log?.(`Started the satellite beside '${container.name}' in helper container '${name}'`);
  const inspect = async (): Promise<ExecState> => {
    const response = await api.request("GET", `/containers/${id}/json`);
    // Auto-removed: it has ended; its code went with it.
    if (response.status === 404) return { running: false, code: null };
    const info = responseJson(response, "inspect the helper") as {
      State?: { Running?: boolean; ExitCode?: unknown };
    };
    const code = info.State?.ExitCode;
    return {
      running: info.State?.Running === true,
      code: typeof code === "number" ? code : null,
    };
  };
  return createExecSession(attached.conn, attached.rest, inspect, `helper ${name}`);
}
