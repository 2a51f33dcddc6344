/**
 * Resolves which engine to talk to, following the Docker CLI's rules:
 * DOCKER_HOST beats DOCKER_CONTEXT, which beats `currentContext` in config.json;
 * the "default" context is DOCKER_HOST (or the local socket) plus DOCKER_TLS_VERIFY/DOCKER_CERT_PATH.
 */

import { DockerError, errorMessage } from "./errors.ts";

/** PEM text of the TLS material for a TCP engine. Verification is always on. */
export interface TlsMaterial {
  /** CA bundle; undefined means the system roots. */
  ca?: string;
  cert?: string;
  key?: string;
}

export type Endpoint =
  | { kind: "unix"; path: string }
  | { kind: "tcp"; hostname: string; port: number; tls?: TlsMaterial }
  | {
    kind: "ssh";
    host: string;
    user?: string;
    port?: number;
    /** remote socket path, passed to `docker system dial-stdio` as --host */
    socketPath?: string;
    /** absolute path of the ssh client */
    sshBinary: string;
  };

export interface EngineConfig {
  endpoint: Endpoint;
  /** e.g. "unix:///var/run/docker.sock" or "tcp://1.2.3.4:2376 (context prod)"; no credentials */
  description: string;
  /** DOCKER_API_VERSION when set; otherwise negotiated */
  apiVersion?: string;
  contextName: string;
}

export interface ConfigSource {
  env: Record<string, string | undefined>;
  home: string;
  /** file reader; undefined when the file does not exist */
  readTextFile?: (path: string) => string | undefined;
}

const DEFAULT_SOCKET = "/var/run/docker.sock";

function defaultReadTextFile(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new DockerError("config", `Cannot read '${path}': ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

function joinPath(...parts: string[]): string {
  return parts.join("/").replace(/\/+/g, "/");
}

/** The Docker config directory: DOCKER_CONFIG or ~/.docker. */
export function configDir(source: ConfigSource): string {
  const fromEnv = source.env.DOCKER_CONFIG;
  return fromEnv ? fromEnv : joinPath(source.home, ".docker");
}

/** Resolves the engine endpoint. Throws DockerError("config") with a clear message. */
export async function resolveEngineConfig(source: ConfigSource): Promise<EngineConfig> {
  const read = source.readTextFile ?? defaultReadTextFile;
  const env = source.env;
  const apiVersion = nonEmpty(env.DOCKER_API_VERSION);
  if (apiVersion !== undefined && !/^\d+\.\d+$/.test(apiVersion)) {
    throw new DockerError(
      "config",
      `Cannot use DOCKER_API_VERSION '${apiVersion}': expected a version like 1.45`,
    );
  }
  const contextName = resolveContextName(source, read);
  if (contextName === "default") {
    const host = nonEmpty(env.DOCKER_HOST) ?? `unix://${DEFAULT_SOCKET}`;
    const from = env.DOCKER_HOST ? "DOCKER_HOST" : "the default socket";
    const endpoint = parseHost(host, from, env);
    if (endpoint.kind === "tcp") {
      const verify = nonEmpty(env.DOCKER_TLS_VERIFY);
      if (verify === undefined && nonEmpty(env.DOCKER_TLS) !== undefined) {
        throw new DockerError(
          "config",
          "Cannot use DOCKER_TLS without verification: set DOCKER_TLS_VERIFY=1 (TLS verification is always on)",
        );
      }
      if (verify !== undefined) {
        const certPath = nonEmpty(env.DOCKER_CERT_PATH) ?? configDir(source);
        endpoint.tls = readTlsDir(certPath, read, true, "DOCKER_CERT_PATH");
        if (!hostHasPort(host)) endpoint.port = 2376;
      }
    }
    return { endpoint, description: describe(endpoint), apiVersion, contextName };
  }
  return await resolveContext(contextName, source, read, apiVersion);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function resolveContextName(source: ConfigSource, read: (p: string) => string | undefined): string {
  const env = source.env;
  if (nonEmpty(env.DOCKER_HOST) !== undefined) return "default";
  const fromEnv = nonEmpty(env.DOCKER_CONTEXT);
  if (fromEnv !== undefined) return fromEnv;
  const path = joinPath(configDir(source), "config.json");
  const text = read(path);
  if (text === undefined) return "default";
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new DockerError("config", `Cannot parse '${path}': ${errorMessage(error)}`);
  }
  if (typeof parsed === "object" && parsed !== null) {
    const current = (parsed as Record<string, unknown>).currentContext;
    if (typeof current === "string" && current !== "") return current;
  }
  return "default";
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function resolveContext(
  name: string,
  source: ConfigSource,
  read: (p: string) => string | undefined,
  apiVersion: string | undefined,
): Promise<EngineConfig> {
  const hash = await sha256Hex(name);
  const dir = configDir(source);
  const metaPath = joinPath(dir, "contexts", "meta", hash, "meta.json");
  const text = read(metaPath);
  if (text === undefined) {
    throw new DockerError(
      "config",
      `Cannot use Docker context '${name}': it does not exist (no ${metaPath})`,
    );
  }
  let host: unknown;
  let skipVerify: unknown;
  try {
    const meta = JSON.parse(text) as { Endpoints?: { docker?: Record<string, unknown> } };
    host = meta.Endpoints?.docker?.Host;
    skipVerify = meta.Endpoints?.docker?.SkipTLSVerify;
  } catch (error) {
    throw new DockerError(
      "config",
      `Cannot use Docker context '${name}': ${metaPath}: ${errorMessage(error)}`,
    );
  }
  if (typeof host !== "string" || host === "") {
    throw new DockerError("config", `Cannot use Docker context '${name}': it has no docker host`);
  }
  if (skipVerify === true) {
    throw new DockerError(
      "config",
      `Cannot use Docker context '${name}': it skips TLS verification, which dockerfuse refuses`,
    );
  }
  const endpoint = parseHost(host, `context '${name}'`, source.env);
  if (endpoint.kind === "tcp") {
    const tlsDir = joinPath(dir, "contexts", "tls", hash, "docker");
    const tls = readTlsDir(tlsDir, read, false, `context '${name}'`);
    if (tls.ca !== undefined || tls.cert !== undefined) endpoint.tls = tls;
  }
  return {
    endpoint,
    description: `${describe(endpoint)} (context ${name})`,
    apiVersion,
    contextName: name,
  };
}

function readTlsDir(
  dir: string,
  read: (p: string) => string | undefined,
  requireCa: boolean,
  origin: string,
): TlsMaterial {
  const ca = read(joinPath(dir, "ca.pem"));
  const cert = read(joinPath(dir, "cert.pem"));
  const key = read(joinPath(dir, "key.pem"));
  if (requireCa && ca === undefined) {
    throw new DockerError(
      "config",
      `Cannot set up TLS from ${origin}: ${joinPath(dir, "ca.pem")} does not exist`,
    );
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new DockerError(
      "config",
      `Cannot set up TLS from ${origin}: ${dir} must hold both cert.pem and key.pem, or neither`,
    );
  }
  return { ca, cert, key };
}

function hostHasPort(host: string): boolean {
  return /:\d+\/?$/.test(host.replace(/^[a-z]+:\/\//, ""));
}

function parseHost(
  host: string,
  origin: string,
  env: Record<string, string | undefined>,
): Endpoint {
  const bad = (why: string): DockerError =>
    new DockerError("config", `Cannot use the engine address from ${origin}: ${why}`);
  const scheme = /^([a-z]+):\/\//.exec(host)?.[1];
  if (scheme === "unix") {
    const path = host.slice("unix://".length) || DEFAULT_SOCKET;
    return { kind: "unix", path };
  }
  if (scheme === "tcp" || scheme === "http") {
    let url: URL;
    try {
      url = new URL(`http://${host.slice(scheme.length + 3)}`);
    } catch {
      throw bad(`'${redact(host)}' is not a valid tcp:// address`);
    }
    const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    if (hostname === "") throw bad("the tcp:// address has no host");
    const port = url.port === "" ? 2375 : Number(url.port);
    return { kind: "tcp", hostname, port };
  }
  if (scheme === "ssh") {
    let url: URL;
    try {
      url = new URL(`http://${host.slice("ssh://".length)}`);
    } catch {
      throw bad(`'${redact(host)}' is not a valid ssh:// address`);
    }
    if (url.password !== "") throw bad("ssh:// addresses with a password are not supported");
    const sshBinary = findInPath("ssh", env.PATH);
    if (sshBinary === undefined) {
      throw bad("an ssh:// engine needs the 'ssh' client, which is not in PATH");
    }
    return {
      kind: "ssh",
      host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
      user: url.username === "" ? undefined : decodeURIComponent(url.username),
      port: url.port === "" ? undefined : Number(url.port),
      socketPath: url.pathname === "/" || url.pathname === "" ? undefined : url.pathname,
      sshBinary,
    };
  }
  throw bad(`'${redact(host)}' must start with unix://, tcp:// or ssh://`);
}

function findInPath(name: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? "/usr/local/bin:/usr/bin:/bin").split(":")) {
    if (dir === "") continue;
    const candidate = joinPath(dir, name);
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && info.mode !== null && (info.mode & 0o111) !== 0) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Removes a password from an address so it can be printed. The password runs from the first
 * `:` after the user name to the last `@`: it may hold `/` and `@` itself (when unsure, more is
 * hidden, never less).
 */
export function redact(address: string): string {
  return address.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):.*@/is, "$1:***@");
}

/** The endpoint as an address without credentials. */
export function describe(endpoint: Endpoint): string {
  switch (endpoint.kind) {
    case "unix":
      return `unix://${endpoint.path}`;
    case "tcp": {
      const host = endpoint.hostname.includes(":") ? `[${endpoint.hostname}]` : endpoint.hostname;
      return `tcp://${host}:${endpoint.port}${endpoint.tls ? " (TLS)" : ""}`;
    }
    case "ssh": {
      const user = endpoint.user === undefined ? "" : `${endpoint.user}@`;
      const port = endpoint.port === undefined ? "" : `:${endpoint.port}`;
      return `ssh://${user}${endpoint.host}${port}${endpoint.socketPath ?? ""}`;
    }
  }
}
