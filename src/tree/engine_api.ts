/**
 * The engine calls the tree needs beyond a single mount's: listings, the event stream, and
 * helper containers (create, attach, start, remove): domain calls over `src/docker/http.ts`'s
 * HTTP/1.1 client, on the same raw connections exec streams use (unix socket, TCP, TLS, ssh),
 * one connection per call.
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
  EngineApi as HttpApi,
  responseMessage,
  statusErrorCode,
  type StreamResponse,
} from "../docker/http.ts";
import { closeQuietly, createDialer, type Dialer } from "../docker/transport.ts";

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

const decoder = new TextDecoder();

function labelsOf(value: unknown): Record<string, string> {
  return typeof value === "object" && value !== null ? value as Record<string, string> : {};
}

/** A `GET /containers/json` entry as the tree sees it. */
function containerSummary(c: Record<string, unknown>): ContainerSummary {
  return {
    id: String(c.Id),
    name: String((c.Names as string[] | undefined)?.[0] ?? c.Id).replace(/^\//, ""),
    running: c.State === "running",
    created: Number(c.Created ?? 0),
    labels: labelsOf(c.Labels),
  };
}

/** A `GET /images/json` entry as the tree sees it (no "<none>:<none>" tag). */
function imageSummary(i: Record<string, unknown>): ImageSummary {
  return {
    id: String(i.Id),
    tags: ((i.RepoTags as string[] | null) ?? []).filter((t) => t !== "<none>:<none>"),
    created: Number(i.Created ?? 0),
    labels: labelsOf(i.Labels),
  };
}

/** The engine API the tree uses. */
export class EngineApi {
  readonly description: string;
  readonly #http: HttpApi;

  constructor(dial: Dialer, apiVersion: string, description: string) {
    this.#http = new HttpApi(dial, apiVersion);
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

  /** One request; the parsed JSON answer (undefined for an empty body). */
  async request(method: string, path: string, body: unknown, what: string): Promise<unknown> {
    const response = await rephrase(
      what,
      this.#http.request(method, path, { json: body, limit: Infinity }),
    );
    if (response.status >= 300 && response.status !== 304) {
      throw new DockerError(
        statusErrorCode(response.status),
        `Cannot ${what}: ${responseMessage(response)}`,
      );
    }
    try {
      const text = decoder.decode(response.body).trim();
      return text === "" ? undefined : JSON.parse(text);
    } catch (error) {
      throw new DockerError("protocol", `Cannot ${what}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  async listContainers(all: boolean): Promise<ContainerSummary[]> {
    const list = await this.request(
      "GET",
      `/containers/json?all=${all ? 1 : 0}`,
      undefined,
      "list containers",
    ) as Record<string, unknown>[];
    return list.map(containerSummary);
  }

  async listImages(): Promise<ImageSummary[]> {
    const list = await this.request("GET", "/images/json", undefined, "list images") as Record<
      string,
      unknown
    >[];
    return list.map(imageSummary);
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
    return list.map(containerSummary);
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
    const { conn, rest } = await rephrase(
      what,
      this.#http.upgrade(
        `/containers/${encodeURIComponent(id)}/attach?stream=1&stdin=1&stdout=1&stderr=1`,
      ),
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
    return createExecSession(conn, rest, inspect, `helper ${id.slice(0, 12)}`);
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
    return list.map(imageSummary);
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
    const events: StreamResponse = await rephrase(
      "follow engine events",
      this.#http.stream("GET", `/events?filters=${filters}`),
    );
    const stop = (): void => events.close();
    signal.addEventListener("abort", stop, { once: true });
    if (signal.aborted) stop();
    onOpen?.();
    let text = "";
    const feed = (bytes: Uint8Array): void => {
      text += decoder.decode(bytes, { stream: true });
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
      for await (const bytes of events.body) {
        feed(bytes);
        if (signal.aborted) break;
      }
    } catch (error) {
      if (!signal.aborted) {
        throw new DockerError("unreachable", `Cannot follow engine events: ${errorMessage(error)}`);
      }
    } finally {
      signal.removeEventListener("abort", stop);
      events.close();
    }
  }
}

/**
 * Awaits an engine call, rephrasing its DockerError as "Cannot `what`: reason" (code kept) and
 * any other failure as "unreachable".
 */
async function rephrase<T>(what: string, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    const reason = error instanceof DockerError ? error.reason : errorMessage(error);
    throw new DockerError(
      error instanceof DockerError ? error.code : "unreachable",
      `Cannot ${what}: ${reason}`,
      { cause: error, reason },
    );
  }
}
