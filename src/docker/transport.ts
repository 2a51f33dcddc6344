/**
 * Raw byte connections to the engine (unix socket, TCP, TLS with client certificates, or
 * `ssh host docker system dial-stdio`), and the HTTP upgrade that turns one into an exec stream.
 * Used for exec streams, where throughput matters; regular API calls go through dockerode.
 */

import type { Endpoint } from "./config.ts";
import { DockerError, errorMessage } from "./errors.ts";

/** The subset of Deno.Conn we need; an ssh child process adapts to it too. */
export interface ByteConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  /** half-close: the peer reads EOF, we can still read */
  closeWrite(): Promise<void>;
  close(): void;
}

/** Opens a new connection to the engine. */
export type Dialer = () => Promise<ByteConn>;

export function createDialer(endpoint: Endpoint, description: string): Dialer {
  return async () => {
    try {
      switch (endpoint.kind) {
        case "unix":
          return await Deno.connect({ transport: "unix", path: endpoint.path });
        case "tcp": {
          if (endpoint.tls === undefined) {
            const conn = await Deno.connect({ hostname: endpoint.hostname, port: endpoint.port });
            conn.setNoDelay(true);
            return conn;
          }
          const tls = endpoint.tls;
          const conn = await Deno.connectTls({
            hostname: endpoint.hostname,
            port: endpoint.port,
            caCerts: tls.ca === undefined ? undefined : [tls.ca],
            ...(tls.cert !== undefined && tls.key !== undefined
              ? { cert: tls.cert, key: tls.key }
              : {}),
          });
          try {
            await conn.handshake();
          } catch (error) {
            conn.close();
            throw error;
          }
          return conn;
        }
        case "ssh":
          return sshConn(endpoint);
      }
    } catch (error) {
      if (error instanceof DockerError) throw error;
      throw new DockerError(
        "unreachable",
        `Cannot connect to the Docker engine at ${description}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
  };
}

/** argv of the ssh client for `docker system dial-stdio`, like the Docker CLI's connection helper. */
export function sshArgs(endpoint: Extract<Endpoint, { kind: "ssh" }>): string[] {
  const args = ["-o", "ConnectTimeout=30", "-T"];
  if (endpoint.user !== undefined) args.push("-l", endpoint.user);
  if (endpoint.port !== undefined) args.push("-p", String(endpoint.port));
  args.push("--", endpoint.host, "docker");
  if (endpoint.socketPath !== undefined) args.push(`--host=unix://${endpoint.socketPath}`);
  args.push("system", "dial-stdio");
  return args;
}

function sshConn(endpoint: Extract<Endpoint, { kind: "ssh" }>): ByteConn {
  const child = new Deno.Command(endpoint.sshBinary, {
    args: sshArgs(endpoint),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader({ mode: "byob" });
  const writer = child.stdin.getWriter();
  let closed = false;
  const kill = (): void => {
    if (closed) return;
    closed = true;
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    reader.cancel().catch(() => {});
    writer.abort().catch(() => {});
    child.status.catch(() => {});
  };
  return {
    async read(buffer: Uint8Array): Promise<number | null> {
      const { value, done } = await reader.read(new Uint8Array(buffer.length));
      if (done || value === undefined) return null;
      buffer.set(value);
      return value.length;
    },
    async write(data: Uint8Array): Promise<number> {
      await writer.write(data.slice());
      return data.length;
    },
    async closeWrite(): Promise<void> {
      await writer.close();
    },
    close: kill,
  };
}

/**
 * A private unix socket that forwards each connection to the engine through a new dialed
 * connection (used for ssh:// so dockerode can speak HTTP over `docker system dial-stdio`).
 */
export async function startForwarder(
  dial: Dialer,
): Promise<{ socketPath: string; close(): void }> {
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-" }); // mode 0700
  const socketPath = `${dir}/engine.sock`;
  const listener = Deno.listen({ transport: "unix", path: socketPath });
  const open = new Set<ByteConn>();
  const copy = async (from: ByteConn, to: ByteConn): Promise<void> => {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        await writeAll(to, buffer.subarray(0, n));
      }
      await to.closeWrite();
    } catch {
      closeQuietly(from);
      closeQuietly(to);
    }
  };
  const serve = async (client: Deno.UnixConn): Promise<void> => {
    let upstream: ByteConn;
    try {
      upstream = await dial();
    } catch {
      client.close();
      return;
    }
    open.add(client).add(upstream);
    await Promise.all([copy(client, upstream), copy(upstream, client)]);
    for (const conn of [client, upstream]) {
      open.delete(conn);
      closeQuietly(conn);
    }
  };
  (async () => {
    try {
      for await (const client of listener) serve(client);
    } catch {
      // listener closed
    }
  })();
  return {
    socketPath,
    close(): void {
      try {
        listener.close();
      } catch {
        // already closed
      }
      for (const conn of open) closeQuietly(conn);
      Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Closes a connection that may already be closed. */
export function closeQuietly(conn: ByteConn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * Writes `body` chunked, then the last chunk. An error `body` throws is handed to `onBodyError`
 * and rethrown as it is (so callers tell it from the connection's own errors).
 */
export async function writeChunked(
  conn: ByteConn,
  body: AsyncIterable<Uint8Array>,
  onBodyError: (error: unknown) => void,
): Promise<void> {
  const encoder = new TextEncoder();
  const iterator = body[Symbol.asyncIterator]();
  while (true) {
    let next: IteratorResult<Uint8Array>;
    try {
      next = await iterator.next();
    } catch (error) {
      onBodyError(error);
      throw error;
    }
    if (next.done) break;
    if (next.value.length === 0) continue;
    await writeAll(conn, encoder.encode(`${next.value.length.toString(16)}\r\n`));
    await writeAll(conn, next.value);
    await writeAll(conn, encoder.encode("\r\n"));
  }
  await writeAll(conn, encoder.encode("0\r\n\r\n"));
}

export async function writeAll(conn: ByteConn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await conn.write(data.subarray(offset));
  }
}

export interface HttpResponseHead {
  status: number;
  reason: string;
  headers: Map<string, string>;
  /** bytes read past the head: the start of the body or of the upgraded stream */
  rest: Uint8Array;
}

const MAX_HEAD = 64 * 1024;

/** Reads an HTTP/1.1 response head. Never throws on malformed input: returns an error string. */
export async function readResponseHead(conn: ByteConn): Promise<HttpResponseHead | string> {
  let buffer = new Uint8Array(4096);
  let fill = 0;
  while (true) {
    const end = findHeadEnd(buffer.subarray(0, fill));
    if (end !== -1) {
      const parsed = parseHead(buffer.subarray(0, end));
      if (typeof parsed === "string") return parsed;
      return { ...parsed, rest: buffer.slice(end + 4, fill) };
    }
    if (fill === buffer.length) {
      if (buffer.length >= MAX_HEAD) return "the response head is too large";
      const bigger = new Uint8Array(buffer.length * 2);
      bigger.set(buffer);
      buffer = bigger;
    }
    const n = await conn.read(buffer.subarray(fill));
    if (n === null) return "the connection closed before a response arrived";
    fill += n;
  }
}

function findHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

function parseHead(bytes: Uint8Array): Omit<HttpResponseHead, "rest"> | string {
  const lines = new TextDecoder().decode(bytes).split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
  if (status === null) return "the response is not HTTP/1.x";
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(status[1]), reason: status[2] ?? "", headers };
}

/** Reads a small response body (for error messages), bounded and never throwing. */
export async function readSmallBody(
  conn: ByteConn,
  head: HttpResponseHead,
  limit = 64 * 1024,
): Promise<string> {
  const length = Number(head.headers.get("content-length") ?? "NaN");
  const chunks: Uint8Array[] = [head.rest];
  let total = head.rest.length;
  try {
    while (total < limit && !(Number.isFinite(length) && total >= length)) {
      const buffer = new Uint8Array(8192);
      const n = await conn.read(buffer);
      if (n === null) break;
      chunks.push(buffer.subarray(0, n));
      total += n;
    }
  } catch {
    // use what we have
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  let text = new TextDecoder().decode(all.subarray(0, Math.min(total, limit)));
  if (head.headers.get("transfer-encoding")?.toLowerCase() === "chunked") {
    text = text.replace(/^[0-9a-fA-F]+\r\n/, "").replace(/\r\n0\r\n\r\n$/, "");
  }
  try {
    const json = JSON.parse(text) as { message?: unknown };
    if (typeof json.message === "string") return json.message;
  } catch {
    // not JSON
  }
  return text.trim();
}

/**
 * POST /exec/{id}/start with an upgrade to a raw stream. Returns the connection and the first
 * stream bytes that arrived with the response head.
 */
export async function startExecHijacked(
  dial: Dialer,
  apiPrefix: string,
  execId: string,
): Promise<{ conn: ByteConn; rest: Uint8Array }> {
  const conn = await dial();
  try {
    const body = JSON.stringify({ Detach: false, Tty: false });
    const request = `POST ${apiPrefix}/exec/${encodeURIComponent(execId)}/start HTTP/1.1\r\n` +
      `Host: docker\r\nUser-Agent: dockerfuse\r\nContent-Type: application/json\r\n` +
      `Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    await writeAll(conn, new TextEncoder().encode(request));
    const head = await readResponseHead(conn);
    if (typeof head === "string") {
      throw new DockerError("protocol", `Cannot start exec ${execId.slice(0, 12)}: ${head}`);
    }
    if (head.status !== 101 && head.status !== 200) {
      const reason = await readSmallBody(conn, head) || `HTTP ${head.status}`;
      throw new DockerError(
        head.status === 404 ? "not-found" : head.status === 409 ? "not-running" : "api",
        `Cannot start exec ${execId.slice(0, 12)}: ${reason}`,
        { reason },
      );
    }
    return { conn, rest: head.rest };
  } catch (error) {
    conn.close();
    if (error instanceof DockerError) throw error;
    throw new DockerError(
      "unreachable",
      `Cannot start exec ${execId.slice(0, 12)}: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

/**
 * PUT /containers/{id}/archive?path=DIR with a chunked body sent as it is produced, so the
 * socket's back-pressure bounds the memory an upload takes. Throws DockerError: "not-found" for
 * a missing container, "api" for other refusals, "unreachable" for connection failures, and the
 * body's own DockerError (e.g. "bundle") as it is.
 */
export async function putArchiveRaw(
  dial: Dialer,
  apiPrefix: string,
  containerId: string,
  targetDir: string,
  body: AsyncIterable<Uint8Array>,
): Promise<void> {
  const what = `upload into '${targetDir}' of container ${containerId.slice(0, 12)}`;
  const encoder = new TextEncoder();
  const conn = await dial();
  let bodyError: unknown;
  try {
    const request =
      `PUT ${apiPrefix}/containers/${encodeURIComponent(containerId)}/archive?path=${
        encodeURIComponent(targetDir)
      } HTTP/1.1\r\nHost: docker\r\nUser-Agent: dockerfuse\r\n` +
      `Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`;
    let sendError: unknown;
    try {
      await writeAll(conn, encoder.encode(request));
      await writeChunked(conn, body, (error) => bodyError = error);
    } catch (error) {
      if (bodyError !== undefined) throw error;
      sendError = error; // the engine may have answered (and closed) early: read its answer
    }
    const head = await readResponseHead(conn);
    if (typeof head === "string") {
      throw sendError ?? new DockerError("protocol", `Cannot ${what}: ${head}`);
    }
    if (head.status === 200) return;
    const message = await readSmallBody(conn, head);
    throw new DockerError(
      head.status === 404 && /no such container/i.test(message) ? "not-found" : "api",
      `Cannot ${what}: ${message || `HTTP ${head.status}`}`,
    );
  } catch (error) {
    if (error instanceof DockerError) throw error;
    if (bodyError !== undefined) {
      throw new DockerError("bundle", `Cannot ${what}: ${errorMessage(error)}`, { cause: error });
    }
    throw new DockerError("unreachable", `Cannot ${what}: ${errorMessage(error)}`, {
      cause: error,
    });
  } finally {
    closeQuietly(conn);
  }
}
