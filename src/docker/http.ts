/**
 * A small HTTP/1.1 client for engine endpoints dockerode has no streaming or hijacking for
 * (image import, container attach): one connection per request (`Connection: close`), bodies
 * sent chunked as they are produced, responses read whole (bounded) or upgraded to a raw stream.
 *
 * @module
 */

import { concatBytes } from "./bytes.ts";
import { DockerError, errorMessage } from "./errors.ts";
import {
  type ByteConn,
  closeQuietly,
  type Dialer,
  type HttpResponseHead,
  readResponseHead,
  readSmallBody,
  writeAll,
  writeChunked,
} from "./transport.ts";

export interface ApiResponse {
  status: number;
  body: Uint8Array;
  /** names in lower case */
  headers: ReadonlyMap<string, string>;
}

export interface RequestOptions {
  /** sent as application/json */
  json?: unknown;
  /** sent chunked as it is produced; an error it throws is rethrown as it is */
  body?: AsyncIterable<Uint8Array>;
  contentType?: string;
  /** largest response body kept (default 16 MiB); beyond it the request fails */
  limit?: number;
}

const DEFAULT_LIMIT = 16 * 1024 * 1024;
const encoder = new TextEncoder();

/** The engine's REST API over raw connections, for the endpoints this module serves. */
export class EngineApi {
  readonly #dial: Dialer;
  readonly #prefix: string;

  /** `apiVersion` like "1.41": paths are sent as /v1.41/… (without: as they are). */
  constructor(dial: Dialer, apiVersion?: string) {
    this.#dial = dial;
    this.#prefix = apiVersion === undefined ? "" : `/v${apiVersion}`;
  }

  /** Sends a request and reads the whole response. Throws DockerError "unreachable" on I/O. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse> {
    const { conn, head } = await this.#send(method, path, options);
    try {
      // An answer to HEAD has no body, whatever its Content-Length says.
      const body = method === "HEAD"
        ? new Uint8Array()
        : await readBody(conn, head, options.limit ?? DEFAULT_LIMIT);
      return { status: head.status, body, headers: head.headers };
    } catch (error) {
      throw connectionError(method, path, error);
    } finally {
      closeQuietly(conn);
    }
  }

  /**
   * Sends a request and answers its body as it arrives (chunked decoded), for answers that do
   * not end by themselves (the event stream); `close()` ends it. On a non-2xx answer, throws
   * DockerError with the engine's message (code by `statusErrorCode`). Reading the body throws
   * the connection's errors as they are.
   */
  async stream(
    method: string,
    path: string,
    options: RequestOptions = {},
  ): Promise<StreamResponse> {
    const { conn, head } = await this.#send(method, path, options);
    if (head.status >= 300 && head.status !== 304) {
      try {
        const message = await readSmallBody(conn, head);
        throw new DockerError(statusErrorCode(head.status), message || `HTTP ${head.status}`);
      } finally {
        closeQuietly(conn);
      }
    }
    return {
      status: head.status,
      body: bodyChunks(new BufferedReader(conn, head.rest, Infinity), head),
      close: () => closeQuietly(conn),
    };
  }

  /** Sends a request and reads the answer's head; the caller reads the body and closes `conn`. */
  async #send(
    method: string,
    path: string,
    options: RequestOptions,
  ): Promise<{ conn: ByteConn; head: HttpResponseHead }> {
    const conn = await this.#dial();
    let bodyError: unknown;
    try {
      const payload = options.json === undefined
        ? undefined
        : encoder.encode(JSON.stringify(options.json));
      const type = options.json !== undefined ? "application/json" : options.contentType;
      let request = `${method} ${this.#prefix}${path} HTTP/1.1\r\nHost: docker\r\n` +
        `User-Agent: dockerfuse\r\nConnection: close\r\n`;
      if (type !== undefined) request += `Content-Type: ${type}\r\n`;
      if (options.body !== undefined) request += "Transfer-Encoding: chunked\r\n";
      else request += `Content-Length: ${payload?.length ?? 0}\r\n`;
      let sendError: unknown;
      try {
        await writeAll(conn, encoder.encode(request + "\r\n"));
        if (payload !== undefined) await writeAll(conn, payload);
        if (options.body !== undefined) {
          await writeChunked(conn, options.body, (error) => bodyError = error);
        }
      } catch (error) {
        if (bodyError !== undefined) throw error;
        sendError = error; // the engine may have answered early (and closed): read its answer
      }
      const head = await readResponseHead(conn);
      if (typeof head === "string") {
        throw sendError ??
          new DockerError("protocol", `${method} ${path}: ${head}`, { reason: head });
      }
      return { conn, head };
    } catch (error) {
      closeQuietly(conn);
      if (bodyError !== undefined) throw error;
      throw connectionError(method, path, error);
    }
  }

  /**
   * POST with an upgrade to a raw stream (container attach). On a non-101/200 answer, throws
   * DockerError with the engine's message ("not-found" for 404).
   */
  async upgrade(path: string): Promise<{ conn: ByteConn; rest: Uint8Array }> {
    const conn = await this.#dial();
    try {
      const request = `POST ${this.#prefix}${path} HTTP/1.1\r\nHost: docker\r\n` +
        `User-Agent: dockerfuse\r\nContent-Type: text/plain\r\nConnection: Upgrade\r\n` +
        `Upgrade: tcp\r\nContent-Length: 0\r\n\r\n`;
      await writeAll(conn, encoder.encode(request));
      const head = await readResponseHead(conn);
      if (typeof head === "string") {
        throw new DockerError("protocol", `POST ${path}: ${head}`, { reason: head });
      }
      if (head.status !== 101 && head.status !== 200) {
        const message = await readSmallBody(conn, head);
        throw new DockerError(
          head.status === 404 ? "not-found" : "api",
          message || `HTTP ${head.status}`,
        );
      }
      return { conn, rest: head.rest };
    } catch (error) {
      closeQuietly(conn);
      throw connectionError("POST", path, error);
    }
  }
}

/** A response whose body is read as it arrives. */
export interface StreamResponse {
  status: number;
  body: AsyncIterable<Uint8Array>;
  /** closes the connection (ends `body`); safe to call more than once */
  close(): void;
}

/** The DockerError code for an engine's error status: 404 "not-found", 409 "not-running". */
export function statusErrorCode(status: number): "not-found" | "not-running" | "api" {
  return status === 404 ? "not-found" : status === 409 ? "not-running" : "api";
}

/** A DockerError as it is; any other failure as "unreachable" (its `reason` the bare cause). */
function connectionError(method: string, path: string, error: unknown): DockerError {
  if (error instanceof DockerError) return error;
  const reason = errorMessage(error);
  return new DockerError(
    "unreachable",
    `The engine connection failed during ${method} ${path}: ${reason}`,
    { cause: error, reason },
  );
}

/** The engine's message in an error response body (JSON {message}), else the text. */
export function responseMessage(response: ApiResponse): string {
  const text = new TextDecoder().decode(response.body).trim();
  try {
    const json = JSON.parse(text) as { message?: unknown };
    if (typeof json.message === "string") return json.message;
  } catch {
    // not JSON
  }
  return text || `HTTP ${response.status}`;
}

/** Parses a JSON body; throws DockerError "protocol" when it is not JSON. */
export function responseJson(response: ApiResponse, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(response.body));
  } catch {
    throw new DockerError("protocol", `Cannot ${what}: the engine's answer is not JSON`);
  }
}

/** Reads a response body: Content-Length, chunked, or until the connection closes. */
async function readBody(
  conn: ByteConn,
  head: { status: number; headers: Map<string, string>; rest: Uint8Array },
  limit: number,
): Promise<Uint8Array> {
  const reader = new BufferedReader(conn, head.rest, limit);
  if (head.status === 204 || head.status === 304) return new Uint8Array();
  if (head.headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) {
    const parts: Uint8Array[] = [];
    while (true) {
      const size = chunkSize(await reader.line());
      if (size === 0) break;
      parts.push(await reader.exactly(size));
      await reader.line();
    }
    return concatBytes(parts);
  }
  const length = head.headers.get("content-length");
  if (length !== undefined) return await reader.exactly(Number(length));
  return await reader.rest();
}

/** A response body as it arrives: Content-Length, chunked (decoded), or until the close. */
async function* bodyChunks(
  reader: BufferedReader,
  head: { status: number; headers: Map<string, string> },
): AsyncGenerator<Uint8Array> {
  if (head.status === 204 || head.status === 304) return;
  if (head.headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) {
    while (true) {
      const size = chunkSize(await reader.line());
      if (size === 0) return;
      yield* reader.upTo(size);
      await reader.line();
    }
  }
  const length = head.headers.get("content-length");
  if (length !== undefined) yield* reader.upTo(Number(length));
  else yield* reader.upTo(Infinity);
}

function chunkSize(line: string): number {
  const size = parseInt(line.split(";")[0].trim(), 16);
  if (!Number.isFinite(size) || size < 0) {
    throw new DockerError("protocol", `bad chunk size '${line}' in the engine's answer`);
  }
  return size;
}

/** Reads lines and exact byte counts off a connection, keeping at most `limit` bytes. */
export class BufferedReader {
  #conn: ByteConn;
  #buffer: Uint8Array;
  #limit: number;
  #taken = 0;

  constructor(conn: ByteConn, initial: Uint8Array, limit: number) {
    this.#conn = conn;
    this.#buffer = initial;
    this.#limit = limit;
  }

  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.#conn.read(chunk);
    if (n === null) return false;
    this.#buffer = concatBytes([this.#buffer, chunk.subarray(0, n)]);
    return true;
  }

  #take(n: number): Uint8Array {
    this.#taken += n;
    if (this.#taken > this.#limit) {
      throw new DockerError("protocol", `the engine's answer is larger than ${this.#limit} bytes`);
    }
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** One CRLF-terminated line, without the CRLF. */
  async line(): Promise<string> {
    while (true) {
      const at = this.#buffer.indexOf(10);
      if (at >= 0) {
        const bytes = this.#take(at + 1);
        return new TextDecoder().decode(bytes).replace(/\r?\n$/, "");
      }
      if (this.#buffer.length > 4096) throw new DockerError("protocol", "a chunk line too long");
      if (!(await this.#fill())) {
        throw new DockerError("protocol", "the engine's answer ended early");
      }
    }
  }

  async exactly(n: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.#limit) {
      throw new DockerError("protocol", `the engine's answer has a bad length (${n})`);
    }
    while (this.#buffer.length < n) {
      if (!(await this.#fill())) {
        throw new DockerError("protocol", "the engine's answer ended early");
      }
    }
    return this.#take(n);
  }

  /**
   * The next `n` bytes (Infinity: up to the close) as they arrive; ends early only for
   * Infinity.
   */
  async *upTo(n: number): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (this.#buffer.length === 0 && !(await this.#fill())) {
        if (left === Infinity) return;
        throw new DockerError("protocol", "the engine's answer ended early");
      }
      const part = this.#take(Math.min(left, this.#buffer.length));
      left -= part.length;
      yield part;
    }
  }

  async rest(): Promise<Uint8Array> {
    while (await this.#fill()) {
      if (this.#buffer.length + this.#taken > this.#limit) this.#take(this.#buffer.length);
    }
    return this.#take(this.#buffer.length);
  }
}
