import { createExecSession } from "./exec.ts";
import type { ByteConn } from "./transport.ts";

function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

function frame(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + payload.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(4, payload.length);
  out.set(payload, 8);
  return out;
}

/** An in-memory connection: `incoming` is served in chunks of `chunk` bytes. */
function fakeConn(incoming: Uint8Array, chunk: number): ByteConn & {
  written: Uint8Array[];
  halfClosed: boolean;
  closed: boolean;
} {
  let offset = 0;
  const conn = {
    written: [] as Uint8Array[],
    halfClosed: false,
    closed: false,
    read(buffer: Uint8Array): Promise<number | null> {
      if (conn.closed) return Promise.reject(new Error("closed"));
      if (offset >= incoming.length) return Promise.resolve(null);
      const n = Math.min(chunk, buffer.length, incoming.length - offset);
      buffer.set(incoming.subarray(offset, offset + n));
      offset += n;
      return Promise.resolve(n);
    },
    write(data: Uint8Array): Promise<number> {
      conn.written.push(data.slice());
      return Promise.resolve(data.length);
    },
    closeWrite(): Promise<void> {
      conn.halfClosed = true;
      return Promise.resolve();
    },
    close(): void {
      conn.closed = true;
    },
  };
  return conn;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("exec session: demultiplexed output, raw stdin, half-close and exit code", async () => {
  const out = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7) & 0xff);
  const parts: Uint8Array[] = [];
  for (let at = 0; at < out.length; at += 32 * 1024) {
    parts.push(frame(1, out.subarray(at, at + 32 * 1024)));
    if (at % (256 * 1024) === 0) parts.push(frame(2, new TextEncoder().encode("e")));
  }
  const incoming = new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
  const conn = fakeConn(incoming.subarray(5), 50_000);
  let inspections = 0;
  const session = createExecSession(conn, incoming.slice(0, 5), () => {
    inspections++;
    return Promise.resolve(
      inspections < 3 ? { running: true, code: null } : { running: false, code: 3 },
    );
  }, "test");
  const writer = session.stdin.getWriter();
  await writer.write(new TextEncoder().encode("input"));
  await writer.close();
  assert(conn.halfClosed);
  assert(new TextDecoder().decode(conn.written[0]) === "input");
  const [stdout, stderr] = await Promise.all([readAll(session.stdout), readAll(session.stderr)]);
  assert(stdout.length === out.length && stdout.every((b, i) => b === out[i]), "stdout differs");
  assert(new TextDecoder().decode(stderr) === "e".repeat(12));
  const { code } = await session.exited;
  assert(code === 3, `code ${code}`);
});

Deno.test("exec session: malformed framing errors stdout instead of throwing", async () => {
  const incoming = new Uint8Array([9, 0, 0, 0, 0, 0, 0, 1, 65]);
  const session = createExecSession(
    fakeConn(incoming, 4),
    new Uint8Array(),
    () => Promise.resolve({ running: false, code: 0 }),
    "test",
  );
  let message = "";
  try {
    await readAll(session.stdout);
  } catch (error) {
    message = error instanceof Error ? error.message : String(error);
  }
  assert(message.includes("invalid stream type 9"), message);
  await session.exited;
});

Deno.test("exec session: kill ends the streams and the session without an error", async () => {
  const conn: ByteConn = {
    read: () => new Promise(() => {}), // never answers until closed
    write: (d) => Promise.resolve(d.length),
    closeWrite: () => Promise.resolve(),
    close: () => {},
  };
  let reject: (e: Error) => void = () => {};
  conn.read = () => new Promise((_, r) => reject = r);
  conn.close = () => reject(new Error("closed"));
  const session = createExecSession(
    conn,
    new Uint8Array(),
    () => Promise.resolve({ running: true, code: null }),
    "test",
  );
  session.kill();
  const stdout = await readAll(session.stdout);
  assert(stdout.length === 0);
  const { code } = await session.exited;
  assert(code === null);
});
