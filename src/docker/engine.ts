/**
 * The engine client. The calls a mount makes (the ping, inspections, path checks, exec create,
 * start and inspect) go over raw connections (http.ts); dockerode, loaded on first use, serves
 * the others (archive downloads, the event stream). Loading it and its first request cost about
 * 150 ms here, which a mount no longer waits for.
 */

import { Buffer } from "node:buffer";
import { resolveEngineConfig } from "./config.ts";
import { DockerError, errorMessage } from "./errors.ts";
import {
  awaitExecStart,
  createExecSession,
  type ExecSession,
  type ExecStart,
  type ExecState,
  type RawExecSession,
} from "./exec.ts";
import type { Dockerode, DockerodeExec, NodeDuplex } from "./dockerode.ts";
import { type ApiResponse, EngineApi, responseJson, responseMessage } from "./http.ts";
import { type TarEntry, type TarPart, tarParts } from "./tar.ts";
import {
  type ByteConn,
  createDialer,
  type Dialer,
  putArchiveRaw,
  startExecHijacked,
  startForwarder,
} from "./transport.ts";

export interface EngineOptions {
  /** environment to read DOCKER_* from; default Deno.env */
  env?: Record<string, string | undefined>;
  /** home directory holding .docker; default $HOME */
  home?: string;
  /** how exec streams travel: our own connection (default) or dockerode's hijacked socket */
  execTransport?: "raw" | "dockerode";
  /**
   * The container the caller inspects first: its inspection is asked beside the ping (without
   * an API version in the path, none being agreed yet), so a remote engine's round trip for it is
   * paid once; `inspectContainer` of the same name takes that answer.
   */
  container?: string;
}

/** The path of a container's inspection, or undefined for what cannot name a container. */
function inspectPath(nameOrIdPrefix: string): string | undefined {
  if (nameOrIdPrefix === "" || /[\/?#\s]/.test(nameOrIdPrefix.replace(/^\//, ""))) {
    return undefined;
  }
  return `/containers/${encodeURIComponent(nameOrIdPrefix.replace(/^\//, ""))}/json`;
}

/** A container's inspection asked ahead (see `EngineOptions.container`): used once. */
interface EarlyInspect {
  path: string;
  /** undefined when the request failed: then it is asked again, and fails as it will */
  response: Promise<ApiResponse | undefined>;
}

export interface ContainerInfo {
  id: string;
  /** without the leading "/" */
  name: string;
  running: boolean;
  /** "x86_64" | "aarch64", or the image's raw architecture (e.g. "riscv64", "arm/v7") */
  arch: string;
  /** e.g. "linux/arm64/v8" */
  platform: string;
  /** destinations of read-write volume and bind mounts (upload places for read-only rootfs) */
  writableMounts?: string[];
  /** the container was started with --read-only */
  readOnlyRootfs?: boolean;
  /** tmpfs mounts (`--tmpfs`, `--mount type=tmpfs`) and whether they allow exec */
  tmpfsMounts?: { path: string; exec: boolean }[];
  /** CAP_DAC_OVERRIDE is dropped (`--cap-drop ALL`): root obeys file modes like anyone */
  withoutDacOverride?: boolean;
  /** the engine's process id of the container's first process (running only; its host's) */
  pid?: number;
}

/** Newest API version this client knows; older engines are spoken to in their own version. */
const CLIENT_API_VERSION = "1.47";
/** Oldest API version we accept (Docker 1.12+). */
const MIN_API_VERSION = "1.24";

interface HttpError {
  statusCode?: number;
  json?: unknown;
  message?: string;
}

function httpStatus(error: unknown): number | undefined {
  const status = (error as HttpError | null)?.statusCode;
  return typeof status === "number" ? status : undefined;
}

/** The engine's message from a dockerode error, without dockerode's "(HTTP code …)" prefix. */
function engineMessage(error: unknown): string {
  const json = (error as HttpError | null)?.json;
  if (typeof json === "object" && json !== null) {
    const message = (json as { message?: unknown }).message;
    if (typeof message === "string") return message;
  }
  return errorMessage(error).replace(/^\(HTTP code \d+\) [^-]*- /, "").trim();
}

function compareVersions(a: string, b: string): number {
  const [amaj, amin] = a.split(".").map(Number);
  const [bmaj, bmin] = b.split(".").map(Number);
  return amaj !== bmaj ? amaj - bmaj : amin - bmin;
}

/** Maps an image architecture to the satellite's arch names; others are returned raw. */
export function satelliteArch(architecture: string, variant?: string): string {
  if (architecture === "amd64" || architecture === "x86_64") return "x86_64";
  if (architecture === "arm64" || architecture === "aarch64") return "aarch64";
  return variant ? `${architecture}/${variant}` : architecture;
}

function isNetworkError(error: unknown): boolean {
  if (httpStatus(error) !== undefined) return false;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ||
    /ECONNREFUSED|ENOENT|EACCES|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|socket hang up|certificate|connect/i
      .test(errorMessage(error));
}

export class Engine {
  /** e.g. "unix:///var/run/docker.sock"; never contains credentials */
  readonly description: string;
  readonly isRemote: boolean;
  /** which engine answers: Podman's Docker-compatible API differs in a few documented ways */
  readonly flavor: "docker" | "podman";
  /** the API version in use, e.g. "1.47" */
  readonly apiVersion: string;
  #loadDocker: () => Promise<Dockerode>;
  #docker: Promise<Dockerode> | undefined;
  #api: EngineApi;
  #dial: Dialer;
  #execTransport: "raw" | "dockerode";
  #onClose: (() => void) | undefined;
  #closed = false;
  #early: EarlyInspect | undefined;

  /** `docker` loads dockerode (on the first call that needs it). */
  constructor(
    docker: () => Promise<Dockerode>,
    dial: Dialer,
    init: {
      description: string;
      isRemote: boolean;
      apiVersion: string;
      flavor?: "docker" | "podman";
      execTransport?: "raw" | "dockerode";
      /** releases what the connection holds (e.g. the ssh forwarder) */
      onClose?: () => void;
      /** a container's inspection asked beside the ping */
      early?: EarlyInspect;
    },
  ) {
    this.#onClose = init.onClose;
    this.#early = init.early;
    this.#loadDocker = docker;
    this.#dial = dial;
    this.#api = new EngineApi(dial, init.apiVersion);
    this.description = init.description;
    this.isRemote = init.isRemote;
    this.flavor = init.flavor ?? "docker";
    this.apiVersion = init.apiVersion;
    this.#execTransport = init.execTransport ?? "raw";
  }

  #dockerode(): Promise<Dockerode> {
    return this.#docker ??= this.#loadDocker();
  }

  /**
   * A request over a raw connection; a failed connection is "unreachable" as `#wrap` says it.
   * The caller judges the status.
   */
  async #request(
    method: string,
    path: string,
    what: string,
    json?: unknown,
  ): Promise<ApiResponse> {
    try {
      return await this.#api.request(method, path, json === undefined ? {} : { json });
    } catch (error) {
      if (error instanceof DockerError && error.code === "unreachable") {
        throw new DockerError(
          "unreachable",
          `Cannot ${what}: the Docker engine at ${this.description} is unreachable: ${error.reason}`,
          { cause: error, reason: error.reason },
        );
      }
      throw error;
    }
  }

  /** The engine's refusal of a request as DockerError "api" (callers map known statuses first). */
  #refused(response: ApiResponse, what: string): DockerError {
    const reason = responseMessage(response);
    return new DockerError("api", `Cannot ${what}: ${reason}`, { reason });
  }

  /** A JSON object answered with a 2xx status; else `#refused`. */
  #object(response: ApiResponse, what: string): Record<string, unknown> {
    if (response.status < 200 || response.status >= 300) throw this.#refused(response, what);
    const value = responseJson(response, what);
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new DockerError("protocol", `Cannot ${what}: the engine's answer is not an object`);
    }
    return value as Record<string, unknown>;
  }

  #wrap(error: unknown, what: string): DockerError {
    if (error instanceof DockerError) return error;
    if (isNetworkError(error)) {
      return new DockerError(
        "unreachable",
        `Cannot ${what}: the Docker engine at ${this.description} is unreachable: ${
          errorMessage(error)
        }`,
        { cause: error },
      );
    }
    const reason = engineMessage(error);
    return new DockerError("api", `Cannot ${what}: ${reason}`, { cause: error, reason });
  }

  /**
   * Finds a container by name or id prefix. Throws DockerError "not-found", or "not-running"
   * for a stopped or paused container unless `allowStopped` is set.
   */
  async inspectContainer(
    nameOrIdPrefix: string,
    options?: { allowStopped?: boolean },
  ): Promise<ContainerInfo> {
    const what = `use container '${nameOrIdPrefix}'`;
    const path = inspectPath(nameOrIdPrefix);
    if (path === undefined) {
      throw new DockerError("not-found", `Cannot ${what}: not a container name or id`);
    }
    const early = this.#early?.path === path ? this.#early.response : undefined;
    this.#early = undefined;
    const response = await early ?? await this.#request("GET", path, what);
    if (response.status === 404) {
      throw new DockerError("not-found", `Cannot ${what}: no such container`);
    }
    if (response.status === 400 && /multiple/i.test(responseMessage(response))) {
      throw new DockerError(
        "not-found",
        `Cannot ${what}: the id prefix matches several containers`,
      );
    }
    const info = this.#object(response, what);
    const state = (info.State ?? {}) as {
      Running?: boolean;
      Paused?: boolean;
      Status?: string;
      Pid?: unknown;
    };
    const id = String(info.Id ?? "");
    const name = String(info.Name ?? "").replace(/^\//, "");
    const running = state.Running === true && state.Paused !== true;
    if (!running && options?.allowStopped !== true) {
      const status = state.Paused ? "paused" : state.Status ?? "not running";
      throw new DockerError(
        "not-running",
        `Cannot use container '${name || nameOrIdPrefix}': it is ${status}, not running`,
      );
    }
    let architecture = "";
    let variant: string | undefined;
    let os = "linux";
    {
      const what = `inspect the image of container '${name}'`;
      const imageRef = encodeURIComponent(String(info.Image ?? ""));
      const image = this.#object(
        await this.#request("GET", `/images/${imageRef}/json`, what),
        what,
      );
      architecture = String(image.Architecture ?? "");
      variant = typeof image.Variant === "string" && image.Variant !== ""
        ? image.Variant
        : undefined;
      os = String(image.Os ?? "linux");
    }
    const mounts = Array.isArray(info.Mounts) ? info.Mounts as Record<string, unknown>[] : [];
    const hostConfig = (info.HostConfig ?? {}) as {
      ReadonlyRootfs?: boolean;
      Tmpfs?: Record<string, unknown>;
      CapDrop?: unknown;
      CapAdd?: unknown;
    };
    // Docker lists what was asked ("ALL"), Podman the capabilities removed ("CAP_CHOWN", …).
    const caps = (list: unknown): string[] =>
      Array.isArray(list) ? list.map((c) => String(c).toUpperCase().replace(/^CAP_/, "")) : [];
    const dropped = caps(hostConfig.CapDrop);
    const withoutDacOverride = (dropped.includes("ALL") || dropped.includes("DAC_OVERRIDE")) &&
      !caps(hostConfig.CapAdd).some((c) => c === "ALL" || c === "DAC_OVERRIDE");
    // Docker lists the options given (its default is noexec), Podman the options used (exec
    // unless "noexec" is among them).
    const tmpfsMounts = new Map<string, boolean>();
    for (const [path, opts] of Object.entries(hostConfig.Tmpfs ?? {})) {
      const list = String(opts ?? "").split(",");
      tmpfsMounts.set(
        path,
        list.includes("exec") || (this.flavor === "podman" && !list.includes("noexec")),
      );
    }
    for (const m of mounts) {
      if (
        m.Type === "tmpfs" && typeof m.Destination === "string" && !tmpfsMounts.has(m.Destination)
      ) {
        tmpfsMounts.set(m.Destination, false);
      }
    }
    return {
      id,
      name,
      running,
      arch: satelliteArch(architecture, variant),
      platform: [os, architecture, variant].filter((part) => part).join("/"),
      writableMounts: mounts
        .filter((m) =>
          m.RW === true && typeof m.Destination === "string" && !tmpfsMounts.has(m.Destination)
        )
        .map((m) => m.Destination as string),
      readOnlyRootfs: hostConfig.ReadonlyRootfs === true,
      tmpfsMounts: [...tmpfsMounts].map(([path, exec]) => ({ path, exec })),
      withoutDacOverride,
      ...(running && Number.isSafeInteger(state.Pid) && (state.Pid as number) > 0
        ? { pid: state.Pid as number }
        : {}),
    };
  }

  /** Whether a path exists in the container (HEAD on the archive endpoint; symlinks not followed). */
  async pathExists(containerId: string, path: string): Promise<boolean> {
    const what = `check '${path}' in container ${containerId.slice(0, 12)}`;
    const response = await this.#request(
      "HEAD",
      `/containers/${encodeURIComponent(containerId)}/archive?path=${encodeURIComponent(path)}`,
      what,
    );
    if (response.status === 404) return false;
    if (response.status >= 200 && response.status < 300) return true;
    throw this.#refused(response, what);
  }

  /**
   * Downloads a path as a tar archive (GET archive), at most `limit` bytes; undefined if the path
   * does not exist. Throws DockerError when the archive is larger than the limit.
   */
  async download(
    containerId: string,
    path: string,
    limit: number,
  ): Promise<Uint8Array | undefined> {
    const what = `read '${path}' from container ${containerId.slice(0, 12)}`;
    let stream: NodeDuplex;
    try {
      stream = await (await this.#dockerode()).getContainer(containerId).getArchive({ path });
    } catch (error) {
      if (httpStatus(error) === 404) return undefined;
      throw this.#wrap(error, what);
    }
    return await new Promise<Uint8Array>((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      let total = 0;
      stream.on("data", (chunk) => {
        const bytes = chunk as Uint8Array;
        total += bytes.length;
        if (total > limit) {
          stream.destroy();
          reject(new DockerError("api", `Cannot ${what}: larger than ${limit} bytes`));
          return;
        }
        chunks.push(bytes);
      });
      stream.on("error", (error) => reject(this.#wrap(error, what)));
      stream.on("end", () => {
        const out = new Uint8Array(total);
        let at = 0;
        for (const chunk of chunks) {
          out.set(chunk, at);
          at += chunk.length;
        }
        resolve(out);
      });
    });
  }

  /**
   * Uploads entries as a tar (files with a `source` read while sending) into an existing
   * directory of the container.
   * With gzip (default: when the engine is remote) the archive travels compressed.
   */
  async upload(
    containerId: string,
    targetDir: string,
    entries: TarEntry[],
    options?: { gzip?: boolean; onProgress?: (sent: number, total: number) => void },
  ): Promise<void> {
    let parts: TarPart[] = tarParts(entries);
    // Compressed, the archive is built in memory first so that progress counts what is sent.
    if (options?.gzip ?? this.isRemote) parts = await gzip(partChunks(parts));
    let total = 0;
    for (const part of parts) total += part.length;
    const onProgress = options?.onProgress;
    // The parts go out as they are (file data uncopied, large files read from disk as they are
    // sent), in chunks of at most 1 MiB so that progress follows what the socket consumed.
    const bytes = (async function* (): AsyncGenerator<Uint8Array> {
      let sent = 0;
      for await (const chunk of partChunks(parts)) {
        yield chunk;
        sent += chunk.length;
        onProgress?.(sent, total);
      }
    })();
    await putArchiveRaw(this.#dial, `/v${this.apiVersion}`, containerId, targetDir, bytes);
  }

  /**
   * Uploads an archive file as it is (a tar, or one compressed with gzip, bzip2 or xz: the
   * engine tells them apart) into an existing directory of the container.
   */
  async uploadArchiveFile(
    containerId: string,
    targetDir: string,
    archivePath: string,
    options?: { onProgress?: (sent: number, total: number) => void },
  ): Promise<void> {
    const total = (await Deno.stat(archivePath)).size;
    const onProgress = options?.onProgress;
    const bytes = (async function* (): AsyncGenerator<Uint8Array> {
      using file = await Deno.open(archivePath);
      const buffer = new Uint8Array(UPLOAD_CHUNK);
      let sent = 0;
      for (;;) {
        const n = await file.read(buffer);
        if (n === null) break;
        yield buffer.subarray(0, n);
        sent += n;
        onProgress?.(sent, total);
      }
    })();
    await putArchiveRaw(this.#dial, `/v${this.apiVersion}`, containerId, targetDir, bytes);
  }

  /**
   * Starts a process with stdin/stdout/stderr attached, no TTY. With `awaitStart`, resolves only
   * once the runtime started it, and throws DockerError "exec" with the runtime's own message
   * when it refused (unknown user, missing or non-executable file: exit codes 126/127).
   */
  async exec(
    containerId: string,
    argv: string[],
    options?: {
      user?: string;
      env?: Record<string, string>;
      awaitStart?: boolean;
      /** called once the engine started the exec (its process may still fail to run) */
      onStarting?: () => void;
    },
  ): Promise<ExecSession> {
    const what = `run '${argv[0] ?? ""}' in container ${containerId.slice(0, 12)}`;
    const created = await this.#request(
      "POST",
      `/containers/${encodeURIComponent(containerId)}/exec`,
      what,
      {
        AttachStdin: true,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
        Cmd: argv,
        ...(options?.user ? { User: options.user } : {}),
        ...(options?.env
          ? { Env: Object.entries(options.env).map(([key, value]) => `${key}=${value}`) }
          : {}),
      },
    );
    if (created.status === 404) {
      throw new DockerError("not-found", `Cannot ${what}: no such container`);
    }
    if (created.status === 409) {
      throw new DockerError("not-running", `Cannot ${what}: ${responseMessage(created)}`);
    }
    if (created.status < 200 || created.status >= 300) {
      throw refusedStart(this.#refused(created, what), what);
    }
    const execId = this.#object(created, what).Id;
    if (typeof execId !== "string" || !/^[0-9a-f]+$/i.test(execId)) {
      throw new DockerError("protocol", `Cannot ${what}: the engine's answer has no exec id`);
    }
    const inspect = async (): Promise<ExecState> => {
      const inspectWhat = `inspect the exec of ${what}`;
      const info = this.#object(
        await this.#request("GET", `/exec/${execId}/json`, inspectWhat),
        inspectWhat,
      );
      const code = info.ExitCode;
      return {
        running: info.Running === true,
        code: typeof code === "number" ? code : null,
        pid: typeof info.Pid === "number" ? info.Pid : undefined,
      };
    };
    const label = `'${argv[0] ?? ""}' in ${containerId.slice(0, 12)}`;
    let session: RawExecSession;
    if (this.#execTransport === "dockerode") {
      let socket: NodeDuplex;
      try {
        const exec: DockerodeExec = (await this.#dockerode()).getExec(execId);
        socket = await exec.start({ hijack: true, stdin: true, Detach: false, Tty: false });
      } catch (error) {
        throw refusedStart(this.#wrap(error, what), what);
      }
      session = createExecSession(nodeDuplexConn(socket), new Uint8Array(), inspect, label);
    } else {
      const prefix = `/v${this.apiVersion}`;
      let started: { conn: ByteConn; rest: Uint8Array };
      try {
        started = await startExecHijacked(this.#dial, prefix, execId);
      } catch (error) {
        throw refusedStart(error, what);
      }
      session = createExecSession(started.conn, started.rest, inspect, label);
    }
    options?.onStarting?.();
    if (options?.awaitStart) {
      const start = await awaitExecStart(session, inspect);
      if (!start.started) {
        const reason = failedStartReason(start);
        throw new DockerError("exec", `Cannot ${what}: ${reason}`, { reason });
      }
      // A pid is the host's only on a local engine (a remote one's host is elsewhere).
      if (start.pid !== undefined && !this.isRemote) return { ...session, pid: start.pid };
    }
    return session;
  }

  /**
   * Lifecycle events (`GET /events`) of the container named or identified by `container`, as
   * they happen: e.g. { action: "start", id }, after a first { action: "watching" } once the
   * engine streams them. Ends when the connection to the engine ends
   * (throws DockerError "unreachable") or `signal` aborts (returns).
   */
  async *containerEvents(
    container: string,
    signal: AbortSignal,
  ): AsyncGenerator<{ action: string; id: string }> {
    const filters = JSON.stringify({ type: ["container"], container: [container] });
    let stream: NodeDuplex;
    try {
      stream = await (await this.#dockerode()).getEvents({ filters });
    } catch (error) {
      throw this.#wrap(error, `watch container '${container}'`);
    }
    const lines: string[] = [];
    let ended: unknown = undefined;
    let wake: (() => void) | undefined;
    let text = "";
    const decoder = new TextDecoder();
    const notify = (): void => {
      wake?.();
      wake = undefined;
    };
    stream.on("data", (chunk) => {
      text += decoder.decode(chunk as Uint8Array, { stream: true });
      const parts = text.split("\n");
      text = parts.pop()!;
      lines.push(...parts.filter((line) => line.trim() !== ""));
      notify();
    });
    for (const name of ["end", "close", "error"]) {
      stream.on(name, (error) => {
        ended ??= error ?? "the event stream ended";
        notify();
      });
    }
    const onAbort = (): void => stream.destroy();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      yield { action: "watching", id: "" };
      while (!signal.aborted) {
        const line = lines.shift();
        if (line !== undefined) {
          const event = JSON.parse(line) as { Action?: unknown; status?: unknown; id?: unknown };
          yield { action: String(event.Action ?? event.status ?? ""), id: String(event.id ?? "") };
          continue;
        }
        if (ended !== undefined) {
          throw new DockerError(
            "unreachable",
            `Cannot watch container '${container}': the Docker engine at ${this.description} ` +
              `ended the event stream (${errorMessage(ended)})`,
          );
        }
        await new Promise<void>((resolve) => wake = resolve);
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      stream.destroy();
    }
  }

  /** Releases the client; open exec sessions keep their own connections. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose?.();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** New raw connections to the engine (for endpoints spoken by src/docker/http.ts). */
  get dial(): Dialer {
    return this.#dial;
  }
}

/**
 * An engine that refuses the exec start with an HTTP error (Podman does so for an unknown user)
 * refused the exec: DockerError "exec". Other errors pass unchanged.
 */
function refusedStart(error: unknown, what: string): unknown {
  if (!(error instanceof DockerError) || error.code !== "api") return error;
  const reason = `the engine refused the exec: ${error.reason}`;
  return new DockerError("exec", `Cannot ${what}: ${reason}`, { cause: error, reason });
}

/** Why an exec ended before it ran, in the runtime's own words. */
export function failedStartReason(start: ExecStart & { started: false }): string {
  const said = start.output.replace(/\s+/g, " ").trim() || "no message";
  switch (start.code) {
    case 126:
      return `the runtime refused the exec: ${said}`;
    case 127:
      return `the command was not found: ${said}`;
    case null:
      return `the exec ended before it started (exit code unknown): ${said}`;
    default:
      return `it exited at once with code ${start.code}: ${said}`;
  }
}

const UPLOAD_CHUNK = 1024 * 1024;

/** The archive's bytes in chunks of at most 1 MiB; a source of the wrong length is an error. */
/** The bytes of an archive's parts, in chunks of at most 1 MiB (file sources read as asked). */
export async function* partChunks(parts: TarPart[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    if (part instanceof Uint8Array) {
      for (let at = 0; at < part.length; at += UPLOAD_CHUNK) {
        yield part.subarray(at, Math.min(part.length, at + UPLOAD_CHUNK));
      }
      continue;
    }
    let got = 0;
    for await (const chunk of part.chunks()) {
      if (got + chunk.length > part.length) break;
      for (let at = 0; at < chunk.length; at += UPLOAD_CHUNK) {
        yield chunk.subarray(at, Math.min(chunk.length, at + UPLOAD_CHUNK));
      }
      got += chunk.length;
    }
    if (got !== part.length) {
      throw new Error(`a file changed size while being sent (${got} of ${part.length} bytes)`);
    }
  }
}

/** Compresses a byte stream into a list of chunks. */
async function gzip(bytes: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  // The stream may read ahead, and source chunks are only valid until the next one: copy them.
  const input = ReadableStream.from(
    (async function* (): AsyncGenerator<Uint8Array<ArrayBuffer>> {
      for await (const chunk of bytes) yield chunk.slice();
    })(),
  );
  const out: Uint8Array[] = [];
  for await (const chunk of input.pipeThrough(new CompressionStream("gzip"))) out.push(chunk);
  return out;
}

/**
 * Adapts dockerode's hijacked node socket to ByteConn. Kept for the throughput comparison only:
 * it has no back-pressure, because pause()/resume() on a TLS socket under Deno's node
 * compatibility stalled the stream for good (measured with Deno 2.9.6).
 */
function nodeDuplexConn(socket: NodeDuplex): ByteConn {
  const queue: Uint8Array[] = [];
  let ended = false;
  let failure: unknown;
  let waiter: (() => void) | undefined;
  const wake = (): void => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  socket.on("data", (chunk) => {
    queue.push(chunk as Uint8Array);
    wake();
  });
  socket.on("end", () => {
    ended = true;
    wake();
  });
  socket.on("close", () => {
    ended = true;
    wake();
  });
  socket.on("error", (error) => {
    failure = error;
    ended = true;
    wake();
  });
  return {
    async read(buffer: Uint8Array): Promise<number | null> {
      while (queue.length === 0) {
        if (failure !== undefined) throw failure;
        if (ended) return null;
        await new Promise<void>((resolve) => waiter = resolve);
      }
      const head = queue[0];
      const n = Math.min(head.length, buffer.length);
      buffer.set(head.subarray(0, n));
      if (n === head.length) queue.shift();
      else queue[0] = head.subarray(n);
      return n;
    },
    write(data: Uint8Array): Promise<number> {
      return new Promise((resolve, reject) => {
        socket.write(Buffer.from(data), (error) => error ? reject(error) : resolve(data.length));
      });
    },
    closeWrite(): Promise<void> {
      return new Promise((resolve) => socket.end(() => resolve()));
    },
    close(): void {
      socket.destroy();
    },
  };
}

/**
 * Connects to the engine the Docker CLI would use (DOCKER_HOST, DOCKER_CONTEXT, current context,
 * TLS material), asks its version and settles the API version. Throws DockerError "config" or
 * "unreachable" with a message naming the address (never credentials).
 */
export async function connectEngine(options?: EngineOptions): Promise<Engine> {
  const env = options?.env ?? Deno.env.toObject();
  const home = options?.home ?? env.HOME ?? "/root";
  const config = await resolveEngineConfig({ env, home });
  const dial = createDialer(config.endpoint, config.description);
  // dockerode cannot speak through an ssh child process; give it a private unix socket whose
  // connections are forwarded over `ssh … docker system dial-stdio`.
  const forwarder = config.endpoint.kind === "ssh" ? await startForwarder(dial) : undefined;
  let apiVersion = config.apiVersion;
  let flavor: "docker" | "podman" = "docker";
  const earlyPath = options?.container === undefined ? undefined : inspectPath(options.container);
  const early = earlyPath === undefined ? undefined : {
    path: earlyPath,
    response: new EngineApi(dial).request("GET", earlyPath).catch(() => undefined),
  };
  try {
    // One round trip that also says someone is there (a remote engine pays each call's round
    // trip before the mount can start). Not /version: Docker runs `runc --version` and
    // `docker-init --version` to answer it (35 ms here, against 1 ms for the ping).
    const response = await new EngineApi(dial).request("GET", "/_ping");
    if (response.status < 200 || response.status >= 300) {
      throw new DockerError(
        "api",
        `Cannot connect to the Docker engine at ${config.description}: ${
          responseMessage(response)
        }`,
      );
    }
    const headers = response.headers;
    if (headers.has("libpod-api-version") || /^libpod/i.test(headers.get("server") ?? "")) {
      flavor = "podman";
    }
    const serverApi = headers.get("api-version") ?? "";
    if (apiVersion === undefined) {
      if (!/^\d+\.\d+$/.test(serverApi)) {
        throw new DockerError(
          "unsupported",
          `Cannot use the Docker engine at ${config.description}: it reports no API version`,
        );
      }
      // A newer engine still speaks CLIENT_API_VERSION (the oldest Docker 29 speaks is 1.44).
      apiVersion = compareVersions(serverApi, CLIENT_API_VERSION) < 0
        ? serverApi
        : CLIENT_API_VERSION;
      if (compareVersions(apiVersion, MIN_API_VERSION) < 0) {
        throw new DockerError(
          "unsupported",
          `Cannot use the Docker engine at ${config.description}: its API ${serverApi} is older than ${MIN_API_VERSION}`,
        );
      }
    }
  } catch (error) {
    forwarder?.close();
    if (!(error instanceof DockerError)) throw error;
    if (error.code !== "unreachable") throw error;
    const text = error.cause !== undefined ? errorMessage(error.cause) : error.reason;
    throw new DockerError(
      "unreachable",
      `Cannot connect to the Docker engine at ${config.description}: ${text}${hint(text)}`,
      { cause: error },
    );
  }
  const version = apiVersion;
  return new Engine(
    async () => {
      const { createDockerode } = await import("./dockerode.ts");
      const docker = createDockerode(config, forwarder?.socketPath);
      docker.modem.version = `v${version}`;
      return docker;
    },
    dial,
    {
      description: config.description,
      isRemote: config.endpoint.kind !== "unix",
      apiVersion,
      flavor,
      execTransport: options?.execTransport,
      onClose: forwarder?.close,
      early,
    },
  );
}

/** A short hint for the usual causes of a failed connection. */
function hint(message: string): string {
  if (/ENOENT|ECONNREFUSED|No such file|refused/i.test(message)) {
    return " (is the Docker daemon running? DOCKER_HOST and DOCKER_CONTEXT choose another engine)";
  }
  if (/EACCES|permission denied/i.test(message)) {
    return " (permission denied: run as root or as a member of the docker group)";
  }
  if (/certificate|UnknownIssuer|verif/i.test(message)) {
    return " (TLS verification failed: check DOCKER_CERT_PATH/ca.pem)";
  }
  return "";
}
