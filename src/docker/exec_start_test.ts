import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { failedStartReason } from "./engine.ts";
import { awaitExecStart, createExecSession, type ExecState } from "./exec.ts";
import type { ByteConn } from "./transport.ts";

const encoder = new TextEncoder();

function frame(type: number, text: string): Uint8Array {
  const payload = encoder.encode(text);
  const out = new Uint8Array(8 + payload.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(4, payload.length);
  out.set(payload, 8);
  return out;
}

/** A connection that serves `incoming` and then ends, or stays open until closed. */
function conn(incoming: Uint8Array, end: boolean): ByteConn {
  let served = false;
  let wake: ((n: number | null) => void) | undefined;
  return {
    read(buffer: Uint8Array): Promise<number | null> {
      if (!served) {
        served = true;
        buffer.set(incoming);
        return Promise.resolve(incoming.length);
      }
      if (end) return Promise.resolve(null);
      return new Promise((resolve) => wake = resolve);
    },
    write: (data) => Promise.resolve(data.length),
    closeWrite: () => Promise.resolve(),
    close: () => wake?.(null),
  };
}

/** An inspect that answers the states in turn, then repeats the last one. */
function inspectSequence(states: ExecState[]): () => Promise<ExecState> {
  let at = 0;
  return () => Promise.resolve(states[Math.min(at++, states.length - 1)]);
}

Deno.test("exec start: the engine's own refusal on the stream is a failed start with its words", async () => {
  const message = "unable to find user root: no matching entries in passwd file\r\n";
  // Docker marks the exec running before it asks the runtime, with no pid yet.
  const inspect = inspectSequence([
    { running: true, code: null, pid: 0 },
    { running: false, code: 126, pid: 0 },
  ]);
  const session = createExecSession(conn(frame(1, message), true), new Uint8Array(), inspect, "t");
  const start = await awaitExecStart(session, inspect);
  deepStrictEqual({ ...start }, { started: false, code: 126, output: message.trim() });
  ok(!start.started);
  equal(
    failedStartReason(start),
    "the runtime refused the exec: unable to find user root: no matching entries in passwd file",
  );
});

Deno.test("exec start: a running process with a pid is started and its output is left unread", async () => {
  const inspect = inspectSequence([
    { running: false, code: null },
    { running: true, code: null, pid: 0 },
    { running: true, code: null, pid: 4242 },
  ]);
  const session = createExecSession(
    conn(frame(1, "first bytes"), false),
    new Uint8Array(),
    inspect,
    "t",
  );
  deepStrictEqual(await awaitExecStart(session, inspect), { started: true, pid: 4242 });
  const reader = session.stdout.getReader();
  const { value } = await reader.read();
  equal(new TextDecoder().decode(value), "first bytes");
  session.kill();
  await session.exited;
});

/** A connection whose first bytes come only when `release` is called. */
function heldConn(incoming: Uint8Array): { conn: ByteConn; release(): void } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  const inner = conn(incoming, false);
  let first = true;
  return {
    conn: {
      ...inner,
      async read(buffer: Uint8Array): Promise<number | null> {
        if (first) {
          first = false;
          await released;
        }
        return await inner.read(buffer);
      },
    },
    release,
  };
}

Deno.test("exec start: the engine is not polled while the process starts, only once it printed", async () => {
  let asked = 0;
  const inspect = (): Promise<ExecState> => {
    asked++;
    return Promise.resolve({ running: true, code: null, pid: 4242 });
  };
  const held = heldConn(frame(2, "starting\n"));
  const session = createExecSession(held.conn, new Uint8Array(), inspect, "t");
  const start = awaitExecStart(session, inspect, 60_000);
  await new Promise((resolve) => setTimeout(resolve, 50));
  equal(asked, 0);
  held.release();
  deepStrictEqual(await start, { started: true, pid: 4242 });
  equal(asked, 1);
  session.kill();
  await session.exited;
});

Deno.test("exec start: a process silent for the quiet time is polled as before", async () => {
  const inspect = inspectSequence([
    { running: true, code: null, pid: 0 },
    { running: true, code: null, pid: 77 },
  ]);
  const held = heldConn(frame(1, "late"));
  const session = createExecSession(held.conn, new Uint8Array(), inspect, "t");
  deepStrictEqual(await awaitExecStart(session, inspect, 10), { started: true, pid: 77 });
  held.release();
  await session.firstOutput;
  session.kill();
  await session.exited;
});

Deno.test("exec start: stderr is part of the reason, and each exit code is named", () => {
  equal(
    failedStartReason({ started: false, code: 127, output: "sh: not found" }),
    "the command was not found: sh: not found",
  );
  equal(
    failedStartReason({ started: false, code: 3, output: "loader:\n  bad ELF" }),
    "it exited at once with code 3: loader: bad ELF",
  );
  ok(failedStartReason({ started: false, code: null, output: "" }).includes("no message"));
});

Deno.test("exec start: a process that printed on stderr and ended reports both streams", async () => {
  const bytes = [frame(1, "out"), frame(2, "exec format error")];
  const all = new Uint8Array(bytes[0].length + bytes[1].length);
  all.set(bytes[0]);
  all.set(bytes[1], bytes[0].length);
  const inspect = inspectSequence([{ running: false, code: 126, pid: 0 }]);
  const session = createExecSession(conn(all, true), new Uint8Array(), inspect, "t");
  deepStrictEqual(await awaitExecStart(session, inspect), {
    started: false,
    code: 126,
    output: "out\nexec format error",
  });
});
