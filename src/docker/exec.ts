/**
 * An exec session over a hijacked engine connection: stdin is written raw, stdout/stderr come
 * demultiplexed from the 8-byte-header framing, `exited` resolves after the stream ends.
 */

import { Demuxer } from "./demux.ts";
import { DockerError } from "./errors.ts";
import { type ByteConn, writeAll } from "./transport.ts";

export interface ExecSession {
  /** closing it half-closes the connection (the process sees EOF on stdin) */
  readonly stdin: WritableStream<Uint8Array>;
  /** demultiplexed raw bytes */
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  /** resolves when the stream has ended; the code comes from exec inspect (null if unknown) */
  readonly exited: Promise<{ code: number | null }>;
  /** tears the connection down */
  kill(): void;
  /** The process id on the engine's host, when known (a started exec on a local engine). */
  readonly pid?: number;
  /**
   * Set when the satellite was asked to also offer a direct socket (`--listen`): the secret the
   * client proves itself with on it (see src/mount/direct.ts).
   */
  readonly directToken?: string;
}

export interface ExecState {
  running: boolean;
  code: number | null;
  /** the process id once the runtime started it (0 or undefined before, and when it failed) */
  pid?: number;
}

/** An exec session as the engine made it: also tells when its stream ended. */
export interface RawExecSession extends ExecSession {
  /** resolves when the engine closed the stream (the process ended or never started) */
  readonly streamEnded: Promise<void>;
  /** resolves at the first byte of output (stdout or stderr), or when the stream ended */
  readonly firstOutput: Promise<void>;
}

/**
 * Reads go into fresh regions of a slab so chunks can be handed out without copying. Each read
 * asks for at most READ_WINDOW bytes: Deno's read costs grow with the requested length (measured:
 * 64 KiB windows beat 256 KiB and 1 MiB ones clearly), and the engine sends ≤ 32 KiB frames.
 */
const SLAB_SIZE = 1024 * 1024;
const READ_WINDOW = 64 * 1024;
/** stdout back-pressure: the pump waits while more than this is queued unread */
const STDOUT_HIGH_WATER = 1024 * 1024;
/** stderr is diagnostics: never blocks the pump; beyond this much unread, new bytes are dropped */
const STDERR_LIMIT = 1024 * 1024;

export function createExecSession(
  conn: ByteConn,
  initial: Uint8Array,
  inspect: () => Promise<ExecState>,
  label: string,
): RawExecSession {
  let stdoutController!: ReadableStreamDefaultController<Uint8Array>;
  let stderrController!: ReadableStreamDefaultController<Uint8Array>;
  let stdoutOpen = true;
  let stderrOpen = true;
  let killed = false;
  let wakePump: (() => void) | undefined;
  let outputSeen!: () => void;
  const firstOutput = new Promise<void>((resolve) => outputSeen = resolve);

  const stdout = new ReadableStream<Uint8Array>({
    start(controller) {
      stdoutController = controller;
    },
    pull() {
      wakePump?.();
    },
    cancel() {
      stdoutOpen = false;
      wakePump?.();
    },
  }, new ByteLengthQueuingStrategy({ highWaterMark: STDOUT_HIGH_WATER }));

  const stderr = new ReadableStream<Uint8Array>({
    start(controller) {
      stderrController = controller;
    },
    cancel() {
      stderrOpen = false;
    },
  }, new ByteLengthQueuingStrategy({ highWaterMark: STDERR_LIMIT }));

  const demuxer = new Demuxer({
    stdout(chunk) {
      outputSeen();
      if (stdoutOpen) stdoutController.enqueue(chunk);
    },
    stderr(chunk) {
      outputSeen();
      if (stderrOpen && (stderrController.desiredSize ?? 0) > 0) stderrController.enqueue(chunk);
    },
  });

  const finishStreams = (error?: DockerError): void => {
    for (
      const [open, controller] of [[stdoutOpen, stdoutController], [
        stderrOpen,
        stderrController,
      ]] as const
    ) {
      if (!open) continue;
      try {
        if (error) controller.error(error);
        else controller.close();
      } catch {
        // already closed
      }
    }
    stdoutOpen = false;
    stderrOpen = false;
  };

  const pump = async (): Promise<void> => {
    let failure: DockerError | undefined;
    let result = demuxer.push(initial);
    let buffer = new Uint8Array(SLAB_SIZE);
    let offset = 0;
    try {
      while (result.ok) {
        while (stdoutOpen && (stdoutController.desiredSize ?? 1) <= 0 && !killed) {
          await new Promise<void>((resolve) => wakePump = resolve);
          wakePump = undefined;
        }
        if (buffer.length - offset < READ_WINDOW) {
          buffer = new Uint8Array(SLAB_SIZE);
          offset = 0;
        }
        const n = await conn.read(buffer.subarray(offset, offset + READ_WINDOW));
        if (n === null) {
          result = demuxer.finish();
          break;
        }
        result = demuxer.push(buffer.subarray(offset, offset + n));
        offset += n;
      }
      if (!result.ok && !killed) {
        failure = new DockerError("protocol", `Exec ${label}: ${result.error}`);
      }
    } catch (error) {
      if (!killed) {
        failure = new DockerError(
          "unreachable",
          `Exec ${label}: the engine connection failed: ${
            error instanceof Error ? error.message : String(error)
          }`,
          { cause: error },
        );
      }
    }
    try {
      conn.close();
    } catch {
      // already closed
    }
    finishStreams(failure);
    outputSeen();
  };

  const streamEnded = pump();
  const exited = streamEnded.then(async () => {
    // The exit code is recorded a moment after the stream ends; poll briefly.
    for (let attempt = 0; attempt < 40; attempt++) {
      let state: ExecState;
      try {
        state = await inspect();
      } catch {
        return { code: null };
      }
      if (!state.running) return { code: state.code };
      if (killed) return { code: null };
      await new Promise((resolve) => setTimeout(resolve, Math.min(10 * (attempt + 1), 100)));
    }
    return { code: null };
  });

  let stdinClosed = false;
  const stdin = new WritableStream<Uint8Array>({
    async write(chunk) {
      if (killed) throw new DockerError("unreachable", `Exec ${label}: the session was killed`);
      try {
        await writeAll(conn, chunk);
      } catch (error) {
        throw new DockerError(
          "unreachable",
          `Exec ${label}: cannot write to stdin: ${
            error instanceof Error ? error.message : String(error)
          }`,
          { cause: error },
        );
      }
    },
    async close() {
      stdinClosed = true;
      if (!killed) await conn.closeWrite();
    },
    abort() {
      if (!stdinClosed) kill();
    },
  });

  const kill = (): void => {
    if (killed) return;
    killed = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
    wakePump?.();
  };

  return { stdin, stdout, stderr, exited, kill, streamEnded, firstOutput };
}

/** How an exec's start went: running, or over before it ran (with all it printed). */
export type ExecStart =
  | { started: true; pid?: number }
  | { started: false; code: number | null; output: string };

/** Longest part of a failed start's output kept for the error message. */
const START_OUTPUT_LIMIT = 4096;
/** Polls of exec inspect before giving up on telling (the session is then handed out as is). */
const START_POLLS = 200;
/**
 * How long a start waits for the process's first output before polling exec inspect. Polls made
 * while the runtime starts the process cost the engine CPU that the start itself needs (measured
 * on 2 cores: a satellite's first output 80 ms later with 2–50 ms polls than without).
 */
const QUIET_START_MS = 1000;

/**
 * Tells whether the runtime started the process: started once exec inspect shows it running
 * with a pid (asked once the process printed something, or after `QUIET_START_MS` of silence,
 * then polled); not started when the stream ended first (the engine then wrote its own error, e.g.
 * "unable to find user …", as stdout, and reports exit code 126 or 127). A started session's
 * streams are left untouched; a failed one's output is read here (it is over anyway).
 */
export async function awaitExecStart(
  session: RawExecSession,
  inspect: () => Promise<ExecState>,
  quietMs: number = QUIET_START_MS,
): Promise<ExecStart> {
  let ended = false;
  const streamEnded = session.streamEnded.then(() => ended = true);
  let quiet: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    session.firstOutput,
    new Promise((resolve) => quiet = setTimeout(resolve, quietMs)),
  ]);
  clearTimeout(quiet);
  for (let attempt = 0; attempt < START_POLLS && !ended; attempt++) {
    let state: ExecState | undefined;
    try {
      state = await inspect();
    } catch {
      // the engine may not answer inspect for a moment; the stream still tells
    }
    if (state?.running === true && (state.pid ?? 0) > 0) return { started: true, pid: state.pid };
    if (ended) break;
    const delay = Math.min(2 * (attempt + 1), 50);
    await Promise.race([streamEnded, new Promise((resolve) => setTimeout(resolve, delay))]);
  }
  if (!ended) return { started: true }; // cannot tell: later reads and the exit code will
  const [out, err, { code }] = await Promise.all([
    textOf(session.stdout),
    textOf(session.stderr),
    session.exited,
  ]);
  const output = [out, err].map((t) => t.trim()).filter((t) => t !== "").join("\n");
  return { started: false, code, output: output.slice(0, START_OUTPUT_LIMIT) };
}

async function textOf(stream: ReadableStream<Uint8Array>): Promise<string> {
  try {
    return await new Response(stream).text();
  } catch {
    return "";
  }
}
