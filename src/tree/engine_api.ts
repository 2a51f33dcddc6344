/**
 * The engine calls the tree needs beyond a single mount's: listings, the event stream, and
 * helper containers (create, attach, start, remove). Plain HTTP/1.1 over the same raw
 * connections exec streams use (unix socket, TCP, TLS, ssh), one connection per call.
 *
 * Invariants:
 * - Every request closes its connection (`Connection: close`); nothing is pooled, so nothing
 *   outlives a call except the event stream and attached streams, which the caller ends.
 * - Failures are `DockerError`s with "Cannot …: reason" messages (never credentials).
 *
 * @module
 */

import { resolveEngineConfig } from "../docker/config.ts";
import { DockerError, errorMessage } from "../docker/errors.ts";
import { createExecSession, type ExecSession } from "../docker/exec.ts";
import {
  type ByteConn,
  closeQuietly,
  createDialer,
  type Dialer,
  readResponseHead,
  readSmallBody,
  writeAll,
} from "../docker/transport.ts";

/** A container as `GET /containers/json` lists it. */
export interface ContainerSummary {
  id: string;
  /** Without the leading "/". */
  name: string;
  running: boolean;
  /** Seconds since the epoch. */
  created: number;
  labels: Record<string, string>;
}

/** An image as `GET /images/json` lists it. */
export interface ImageSummary {
  id: string;
  /** "repo:tag" references; empty for an untagged image. */
  tags: string[];
  created: number;
  labels: Record<string, string>;
}

/** A volume as `GET /volumes` lists it. */
export interface VolumeSummary {
  name: string;
  /** Seconds since the epoch (0 if the engine does not say). */
  created: number;
  labels: Record<string, string>;
}

/** One engine event (the parts the tree uses). */
export interface EngineEvent {
  type: string;
  action: string;
  id: string;
  attributes: Record<string, string>;
}

/** What a helper container is created with. */
export interface HelperSpec {
  image: string;
  entrypoint: string[];
  env?: Record<string, string>;
  labels: Record<string, string>;
  /** "volume:/dest" binds (volumes mounted into the helper). */
  binds?: string[];
  platform?: string;
  user?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Decodes an HTTP/1.1 chunked body incrementally (input split anywhere). */
export class Dechunker {
  #pending = new Uint8Array(0);
  #left = 0; // bytes left in the current chunk, then its CRLF
  #done = false;

  get done(): boolean {
    return this.#done;
  }

  /** Body bytes in `input` (may be empty). */
  push(input: Uint8Array): Uint8Array[] {
    const all = new Uint8Array(this.#pending.length + input.length);
    all.set(this.#pending);
    all.set(input, this.#pending.length);
    const out: Uint8Array[] = [];
    let at = 0;
    while (at < all.length && !this.#done) {
      if (this.#left > 0) {
        const take = Math.min(this.#left, all.length - at);
        out.push(all.slice(at, at + take));
        at += take;
        this.#left -= take;
        continue;
      }
      const eol = all.indexOf(10, at);
      if (eol < 0) break;
      const line = decoder.decode(all.subarray(at, eol)).trim();
      at = eol + 1;
      if (line === "") continue; // the CRLF after a chunk
      const size = parseInt(line.split(";")[0], 16);
      if (!Number.isFinite(size)) throw new Error(`bad chunk size '${line}'`);
      if (size === 0) this.#done = true;
      this.#left = size;
    }
    this.#pending = all.slice(at);
    return out;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function labelsOf(value: unknown): Record<string, string> {
  return typeof value === "object" && value !== null ? value as Record<string, string> : {};
}

/** The engine API the tree uses. */
export class EngineApi {
  readonly description: string;
  readonly #dial: Dialer;
  readonly #prefix: string;

  constructor(dial: Dialer, apiVersion: string, description: string) {
    this.#dial = dial;
    this.#prefix = `/v${apiVersion}`;
    this.description = description;
  }

  /** Connects like `connectEngine` does (DOCKER_HOST, contexts, TLS, ssh). */
  static async connect(
    env: Record<string, string | undefined>,
    apiVersion: string,
  ): Promise<EngineApi> {
    const config = await resolveEngineConfig({ env, home: env.HOME ?? "/root" });
    return new EngineApi(
      createDialer(config.endpoint, config.description),
      apiVersion,
      config.description,
    );
  }

  async #open(method: string, path: string, body: unknown, what: string, upgrade = false) {
    const conn = await this.#dial();
    try {
      const text = body === undefined ? "" : JSON.stringify(body);
      const head = `${method} ${this.#prefix}${path} HTTP/1.1\r\nHost: docker\r\n` +
        `User-Agent: dockerfuse\r\n` +
        (upgrade ? "Connection: Upgrade\r\nUpgrade: tcp\r\n" : "Connection: close\r\n") +
        (body === undefined
          ? "Content-Length: 0\r\n"
          : `Content-Type: application/json\r\nContent-Length: ${
            encoder.encode(text).length
          }\r\n`) +
        "\r\n";
      await writeAll(conn, encoder.encode(head + text));
      const response = await readResponseHead(conn);
      if (typeof response === "string") {
        throw new DockerError("protocol", `Cannot ${what}: ${response}`);
      }
      if (response.status >= 300 && response.status !== 304) {
        const message = await readSmallBody(conn, response);
        throw new DockerError(
          response.status === 404 ? "not-found" : response.status === 409 ? "not-running" : "api",
          `Cannot ${what}: ${message || `HTTP ${response.status}`}`,
        );
      }
      return { conn, head: response };
    } catch (error) {
      closeQuietly(conn);
      if (error instanceof DockerError) throw error;
      throw new DockerError("unreachable", `Cannot ${what}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  /** One request; the parsed JSON answer (undefined for an empty body). */
  async request(method: string, path: string, body: unknown, what: string): Promise<unknown> {
    const { conn, head } = await this.#open(method, path, body, what);
    try {
      const chunked = head.headers.get("transfer-encoding")?.toLowerCase() === "chunked";
      const dechunk = new Dechunker();
      const parts: Uint8Array[] = chunked ? dechunk.push(head.rest) : [head.rest];
      const length = Number(head.headers.get("content-length") ?? "NaN");
      let got = head.rest.length;
      while (!(chunked && dechunk.done) && !(Number.isFinite(length) && got >= length)) {
        const buffer = new Uint8Array(65536);
        const n = await conn.read(buffer);
        if (n === null) break;
        got += n;
        const bytes = buffer.subarray(0, n);
        parts.push(...(chunked ? dechunk.push(bytes) : [bytes]));
      }
      const text = decoder.decode(concat(parts)).trim();
      return text === "" ? undefined : JSON.parse(text);
    } catch (error) {
      throw new DockerError("protocol", `Cannot ${what}: ${errorMessage(error)}`, {
        cause: error,
      });
    } finally {
      closeQuietly(conn);
    }
  }

  async listContainers(all: boolean): Promise<ContainerSummary[]> {
    const list = await this.request(
      "GET",
      `/containers/json?all=${all ? 1 : 0}`,
      undefined,
      "list containers",
    ) as Record<string, unknown>[];
    return list.map((c) => ({
      id: String(c.Id),
      name: String((c.Names as string[] | undefined)?.[0] ?? c.Id).replace(/^\//, ""),
      running: c.State === "running",
      created: Number(c.Created ?? 0),
      labels: labelsOf(c.Labels),
    }));
  }

  async listImages(): Promise<ImageSummary[]> {
    const list = await this.request("GET", "/images/json", undefined, "list images") as Record<
      string,
      unknown
    >[];
    return list.map((i) => ({
      id: String(i.Id),
      tags: ((i.RepoTags as string[] | null) ?? []).filter((t) => t !== "<none>:<none>"),
      created: Number(i.Created ?? 0),
      labels: labelsOf(i.Labels),
    }));
  }

  async listVolumes(): Promise<VolumeSummary[]> {
    const answer = await this.request("GET", "/volumes", undefined, "list volumes") as {
      Volumes?: Record<string, unknown>[] | null;
    };
    return (answer.Volumes ?? []).map((v) => ({
      name: String(v.Name),
      created: Math.floor((Date.parse(String(v.CreatedAt ?? "")) || 0) / 1000),
      labels: labelsOf(v.Labels),
    }));
  }

  /** Containers carrying `label` ("key=value"), stopped ones included. */
  async containersLabelled(label: string): Promise<ContainerSummary[]> {
    const filters = encodeURIComponent(JSON.stringify({ label: [label] }));
    const list = await this.request(
      "GET",
      `/containers/json?all=1&filters=${filters}`,
      undefined,
      "list containers",
    ) as Record<string, unknown>[];
    return list.map((c) => ({
      id: String(c.Id),
      name: String((c.Names as string[] | undefined)?.[0] ?? c.Id).replace(/^\//, ""),
      running: c.State === "running",
      created: Number(c.Created ?? 0),
      labels: labelsOf(c.Labels),
    }));
  }

  async inspectContainerRaw(id: string): Promise<Record<string, unknown>> {
    return await this.request(
      "GET",
      `/containers/${encodeURIComponent(id)}/json`,
      undefined,
      `inspect container '${id}'`,
    ) as Record<string, unknown>;
  }

  async inspectImageRaw(ref: string): Promise<Record<string, unknown>> {
    return await this.request(
      "GET",
      `/images/${encodeURIComponent(ref)}/json`,
      undefined,
      `inspect image '${ref}'`,
    ) as Record<string, unknown>;
  }

  /** Creates a stopped helper container; its id. */
  async createHelper(spec: HelperSpec): Promise<string> {
    const query = spec.platform ? `?platform=${encodeURIComponent(spec.platform)}` : "";
    const answer = await this.request("POST", `/containers/create${query}`, {
      Image: spec.image,
      Entrypoint: spec.entrypoint,
      Cmd: [],
      Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
      Labels: spec.labels,
      OpenStdin: true,
      StdinOnce: true,
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      NetworkDisabled: true,
      Healthcheck: { Test: ["NONE"] },
      ...(spec.user ? { User: spec.user } : {}),
      HostConfig: {
        NetworkMode: "none",
        RestartPolicy: { Name: "no" },
        Binds: spec.binds ?? [],
      },
    }, `create a helper container from '${spec.image}'`) as { Id?: string };
    if (typeof answer?.Id !== "string") {
      throw new DockerError("api", `Cannot create a helper container: no id in the answer`);
    }
    return answer.Id;
  }

  /**
   * Attaches stdin/stdout/stderr of a created container, then starts it: the session reads
   * what the entrypoint writes and writes its stdin (multiplexed as an exec stream is).
   */
  async attachAndStart(id: string): Promise<ExecSession> {
    const what = `attach to helper container ${id.slice(0, 12)}`;
    const { conn, head } = await this.#open(
      "POST",
      `/containers/${encodeURIComponent(id)}/attach?stream=1&stdin=1&stdout=1&stderr=1`,
      undefined,
      what,
      true,
    );
    try {
      await this.request(
        "POST",
        `/containers/${encodeURIComponent(id)}/start`,
        undefined,
        `start helper container ${id.slice(0, 12)}`,
      );
    } catch (error) {
      closeQuietly(conn);
      throw error;
    }
    const inspect = async () => {
      const info = await this.inspectContainerRaw(id);
      const state = (info.State ?? {}) as { Running?: boolean; ExitCode?: number };
      return { running: state.Running === true, code: state.ExitCode ?? null };
    };
    return createExecSession(conn as ByteConn, head.rest, inspect, `helper ${id.slice(0, 12)}`);
  }

  /**
   * Commits a container's filesystem (a stopped one: nothing to pause) as an untagged image
   * carrying `labels`; the image id.
   */
  async commit(containerId: string, labels: Record<string, string>): Promise<string> {
    const answer = await this.request(
      "POST",
      `/commit?container=${encodeURIComponent(containerId)}&pause=false`,
      { Labels: labels },
      `snapshot container ${containerId.slice(0, 12)}`,
    ) as { Id?: string };
    if (typeof answer?.Id !== "string") {
      throw new DockerError("api", `Cannot snapshot container ${containerId.slice(0, 12)}: no id`);
    }
    return answer.Id;
  }

  /** Images carrying `label` ("key" or "key=value"), untagged ones included. */
  async imagesLabelled(label: string): Promise<ImageSummary[]> {
    const filters = encodeURIComponent(JSON.stringify({ label: [label] }));
    const list = await this.request(
      "GET",
      `/images/json?all=1&filters=${filters}`,
      undefined,
      "list images",
    ) as Record<string, unknown>[];
    return list.map((i) => ({
      id: String(i.Id),
      tags: ((i.RepoTags as string[] | null) ?? []).filter((t) => t !== "<none>:<none>"),
      created: Number(i.Created ?? 0),
      labels: labelsOf(i.Labels),
    }));
  }

  /** Removes an image (forced, untagged children kept); a missing one is no error. */
  async removeImage(id: string): Promise<void> {
    try {
      await this.request(
        "DELETE",
        `/images/${encodeURIComponent(id)}?force=1`,
        undefined,
        `remove image ${id.slice(0, 19)}`,
      );
    } catch (error) {
      if (error instanceof DockerError && error.code === "not-found") return;
      throw error;
    }
  }

  /** Removes a container (forced, with its anonymous volumes); a missing one is no error. */
  async removeContainer(id: string): Promise<void> {
    try {
      await this.request(
        "DELETE",
        `/containers/${encodeURIComponent(id)}?force=1&v=1`,
        undefined,
        `remove container ${id.slice(0, 12)}`,
      );
    } catch (error) {
      if (error instanceof DockerError && error.code === "not-found") return;
      throw error;
    }
  }

  /**
   * Follows the event stream until `signal` aborts or the connection ends (then it returns).
   * `onOpen` is called once the engine accepted the subscription.
   */
  async followEvents(
    signal: AbortSignal,
    onEvent: (event: EngineEvent) => void,
    onOpen?: () => void,
  ): Promise<void> {
    const filters = encodeURIComponent(
      JSON.stringify({ type: ["container", "image", "volume"] }),
    );
    const { conn, head } = await this.#open(
      "GET",
      `/events?filters=${filters}`,
      undefined,
      "follow engine events",
    );
    const stop = (): void => closeQuietly(conn);
    signal.addEventListener("abort", stop, { once: true });
    onOpen?.();
    const chunked = head.headers.get("transfer-encoding")?.toLowerCase() === "chunked";
    const dechunk = new Dechunker();
    let text = "";
    const feed = (bytes: Uint8Array): void => {
      for (const part of chunked ? dechunk.push(bytes) : [bytes]) {
        text += decoder.decode(part, { stream: true });
      }
      let eol: number;
      while ((eol = text.indexOf("\n")) >= 0) {
        const line = text.slice(0, eol).trim();
        text = text.slice(eol + 1);
        if (line === "") continue;
        try {
          const e = JSON.parse(line) as Record<string, unknown>;
          const actor = (e.Actor ?? {}) as { ID?: string; Attributes?: Record<string, string> };
          onEvent({
            type: String(e.Type ?? e.type ?? ""),
            action: String(e.Action ?? e.status ?? ""),
            id: String(actor.ID ?? e.id ?? ""),
            attributes: actor.Attributes ?? {},
          });
        } catch {
          // not an event line
        }
      }
    };
    try {
      feed(head.rest);
      while (!signal.aborted) {
        const buffer = new Uint8Array(16384);
        const n = await conn.read(buffer);
        if (n === null) break;
        feed(buffer.subarray(0, n));
      }
    } catch (error) {
      if (!signal.aborted) {
        throw new DockerError("unreachable", `Cannot follow engine events: ${errorMessage(error)}`);
      }
    } finally {
      signal.removeEventListener("abort", stop);
      closeQuietly(conn);
    }
  }
}
