import { deepStrictEqual, equal, match, ok, rejects } from "node:assert/strict";
import { DockerError } from "./errors.ts";
import { EngineApi, responseMessage } from "./http.ts";
import type { ByteConn } from "./transport.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A one-connection-per-request HTTP server on a unix socket: records each raw request and
 * answers it with `reply(request)` (raw bytes), then closes.
 */
async function withServer(
  reply: (request: string) => string | Uint8Array,
  fn: (api: EngineApi, requests: string[]) => Promise<void>,
  /** null: an unversioned client */
  apiVersion: string | null = "1.41",
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-http-" });
  const path = `${dir}/engine.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const requests: string[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      let text = "";
      const buffer = new Uint8Array(65536);
      // A request is complete at the end of its head (Content-Length 0) or of its chunked body.
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n));
        const head = text.indexOf("\r\n\r\n");
        if (head < 0) continue;
        if (/transfer-encoding: chunked/i.test(text.slice(0, head))) {
          if (text.endsWith("\r\n0\r\n\r\n")) break;
        } else {
          const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
          if (text.length - head - 4 >= length) break;
        }
      }
      requests.push(text);
      const answer = reply(text);
      await conn.write(typeof answer === "string" ? encoder.encode(answer) : answer);
      conn.close();
    }
  })();
  try {
    await fn(
      new EngineApi(() => Deno.connect({ transport: "unix", path }), apiVersion ?? undefined),
      requests,
    );
  } finally {
    listener.close();
    await serving.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("http: a JSON request is sent with its length under the API version prefix", async () => {
  await withServer(
    () =>
      'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"Id":"ab"}',
    async (api, requests) => {
      const response = await api.request("POST", "/containers/create?name=x", { json: { a: 1 } });
      equal(response.status, 201);
      equal(decoder.decode(response.body), '{"Id":"ab"}');
      match(requests[0], /^POST \/v1\.41\/containers\/create\?name=x HTTP\/1\.1\r\n/);
      match(requests[0], /Content-Length: 7\r\n/);
      ok(requests[0].endsWith('\r\n\r\n{"a":1}'));
    },
  );
});

Deno.test("http: HEAD reads no body whatever its length says; unversioned paths as given", async () => {
  await withServer(
    () => "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 512\r\n\r\n",
    async (api, requests) => {
      const response = await api.request("HEAD", "/_ping");
      equal(response.status, 200);
      equal(response.body.length, 0);
      equal(response.headers.get("api-version"), "1.41");
      match(requests[0], /^HEAD \/_ping HTTP\/1\.1\r\n/);
    },
    null,
  );
});

Deno.test("http: a chunked answer is decoded, a streamed body is sent chunked", async () => {
  await withServer(
    () =>
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      '5\r\n{"str\r\n' + 'a;ext=1\r\neam":"ok"}\r\n' + "0\r\n\r\n",
    async (api, requests) => {
      const body = (async function* () {
        yield encoder.encode("hello ");
        yield new Uint8Array();
        yield encoder.encode("world");
      })();
      const response = await api.request("POST", "/images/load", {
        body,
        contentType: "application/x-tar",
      });
      equal(decoder.decode(response.body), '{"stream":"ok"}');
      const sent = requests[0].slice(requests[0].indexOf("\r\n\r\n") + 4);
      equal(sent, "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
      match(requests[0], /Content-Type: application\/x-tar\r\n/);
    },
  );
});

Deno.test("http: an answer without length is read to the end; 204 has no body", async () => {
  await withServer(
    (request) =>
      request.startsWith("GET")
        ? "HTTP/1.1 200 OK\r\n\r\nuntil the end"
        : "HTTP/1.1 204 No Content\r\n\r\n",
    async (api) => {
      equal(decoder.decode((await api.request("GET", "/x")).body), "until the end");
      const started = await api.request("POST", "/containers/a/start");
      equal(started.status, 204);
      equal(started.body.length, 0);
    },
  );
});

Deno.test("http: an error answer's message is the engine's JSON message", async () => {
  await withServer(
    () =>
      'HTTP/1.1 404 Not Found\r\nContent-Length: 40\r\n\r\n{"message":"No such image: x:y"}        ',
    async (api) => {
      const response = await api.request("GET", "/images/x:y/json");
      equal(response.status, 404);
      equal(responseMessage(response), "No such image: x:y");
    },
  );
});

Deno.test("http: a body larger than the limit fails as a protocol error", async () => {
  await withServer(
    () => "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + "x".repeat(100),
    async (api) => {
      await rejects(
        api.request("GET", "/big", { limit: 10 }),
        (e) => e instanceof DockerError && e.code === "protocol",
      );
    },
  );
});

Deno.test("http: a body that throws is rethrown as it is", async () => {
  await withServer(
    () => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    async (api) => {
      const body = (async function* () {
        yield encoder.encode("x");
        throw new DockerError("bundle", "Cannot read satellite file 'deno': gone");
      })();
      await rejects(
        api.request("POST", "/images/load", { body }),
        (e) => e instanceof DockerError && e.code === "bundle" && /gone/.test(e.message),
      );
    },
  );
});

Deno.test("http: upgrade returns the stream's first bytes; a refusal carries the message", async () => {
  await withServer(
    (request) =>
      request.includes("/containers/ok/")
        ? "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00\x00"
        : 'HTTP/1.1 404 Not Found\r\nContent-Length: 32\r\n\r\n{"message":"No such container"}\n',
    async (api) => {
      const { conn, rest } = await api.upgrade("/containers/ok/attach?stream=1");
      deepStrictEqual([...rest], [1, 0, 0, 0]);
      conn.close();
      await rejects(
        api.upgrade("/containers/gone/attach?stream=1"),
        (e) =>
          e instanceof DockerError && e.code === "not-found" && /No such container/.test(e.message),
      );
    },
  );
});

/** A dialer whose connection swallows the request and answers `pieces`, one per read. */
function piecesDialer(pieces: string[]): () => Promise<ByteConn> {
  return () => {
    const left = pieces.map((piece) => encoder.encode(piece));
    return Promise.resolve({
      read: (buffer: Uint8Array) => {
        const piece = left.shift();
        if (piece === undefined) return Promise.resolve(null);
        buffer.set(piece);
        return Promise.resolve(piece.length);
      },
      write: (data: Uint8Array) => Promise.resolve(data.length),
      closeWrite: () => Promise.resolve(),
      close: () => {},
    });
  };
}

async function streamed(api: EngineApi): Promise<string> {
  const response = await api.stream("GET", "/events");
  let text = "";
  try {
    for await (const part of response.body) text += decoder.decode(part);
  } finally {
    response.close();
  }
  return text;
}

const CHUNKED_HEAD = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
const CHUNKED_BODY = '1a\r\n{"Type":"container","x":1}\r\n5;ext=1\r\nhello\r\n0\r\n\r\n';

Deno.test("http: a streamed chunked body is decoded however the bytes arrive", async () => {
  const wire = CHUNKED_HEAD + CHUNKED_BODY;
  for (let at = CHUNKED_HEAD.length; at <= wire.length; at++) {
    const api = new EngineApi(piecesDialer([wire.slice(0, at), wire.slice(at)]), "1.41");
    equal(await streamed(api), '{"Type":"container","x":1}hello', `split at ${at}`);
  }
});

Deno.test("http: a streamed body without length runs to the close; a bad chunk throws", async () => {
  const plain = new EngineApi(piecesDialer(["HTTP/1.1 200 OK\r\n\r\nab", "cd"]), "1.41");
  equal(await streamed(plain), "abcd");
  const bad = new EngineApi(piecesDialer([CHUNKED_HEAD + "zz\r\n"]), "1.41");
  await rejects(streamed(bad), (e) => e instanceof DockerError && /bad chunk size/.test(e.message));
  const cut = new EngineApi(piecesDialer([CHUNKED_HEAD + "5\r\nhel"]), "1.41");
  await rejects(streamed(cut), (e) => e instanceof DockerError && /ended early/.test(e.message));
});

Deno.test("http: a refused stream carries the engine's message and status code", async () => {
  await withServer(
    () => 'HTTP/1.1 409 Conflict\r\nContent-Length: 23\r\n\r\n{"message":"is paused"}',
    async (api) => {
      await rejects(
        api.stream("GET", "/events"),
        (e) => e instanceof DockerError && e.code === "not-running" && e.message === "is paused",
      );
    },
  );
});
