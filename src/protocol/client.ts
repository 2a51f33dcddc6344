/**
 * The typed RPC client: `client.call.lstat({ path: "etc" })`.
 *
 * Calls never throw or reject: they resolve to an {@link RpcResult}, whose failure carries the
 * Linux errno number. Timeouts and a closed connection give EIO, cancellation gives EINTR.
 *
 * @module
 */

import type { Packr, Unpackr } from "msgpackr/pack";
import { ERRNO_NUMBERS, errnoNumber } from "./errno.ts";
import {
  type Change,
  ChangeKind,
  eventSchema,
  type Hello,
  helloSchema,
  isMethodName,
  MAX_FRAME_BYTES,
  type MethodName,
  METHODS,
  type ParamsOf,
  PROTOCOL_VERSION,
  type ResultOf,
} from "./methods.ts";
import { BulkLane } from "./lane.ts";
import { INVALID, str } from "./schema.ts";
import {
  createPackr,
  createUnpackr,
  decodeBody,
  encodeRequest,
  firstFrameLength,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  Kind,
  LARGE_PAYLOAD_BYTES,
} from "./wire.ts";

/**
 * The satellite's hello in `frame` (one whole frame, header included), or undefined when it is
 * not one: what a client reads before it chooses the channel to go on with. Never throws.
 */
export function helloOfFrame(frame: Uint8Array): Hello | undefined {
  if (firstFrameLength(frame) !== frame.length) return undefined;
  const decoded = decodeBody(createUnpackr(), frame.subarray(FRAME_HEADER_BYTES));
  if (!decoded.ok || decoded.value[0] !== Kind.HELLO) return undefined;
  const hello = helloSchema.parse(decoded.value[1]);
  return hello === INVALID ? undefined : hello;
}

/** Outcome of a call. */
export type RpcResult<T> =
  | { readonly ok: true; readonly value: T }
  | RpcFailureResult;

/** A failed call: errno number and name, plus a message for logs. */
export interface RpcFailureResult {
  readonly ok: false;
  /** Linux errno number (host numbering), e.g. 2. */
  readonly errno: number;
  /** Errno name, e.g. "ENOENT". */
  readonly code: string;
  readonly message: string;
}

/** Per-call options. */
export interface CallOptions {
  /** Fail with EIO after this many milliseconds (0: never). Default: the client's `timeoutMs`. */
  timeoutMs?: number;
  /** Aborting fails the call with EINTR (the satellite may still carry it out). */
  signal?: AbortSignal;
  /**
   * Called (synchronously, from the call) when a bulk call has to wait in the bulk lane, with a
   * promise that resolves once its frame is queued on the stream (never when it fails first).
   * Not called when the frame is queued at once.
   */
  onHeld?: (sent: Promise<void>) => void;
}

/** One typed function per method of the table. */
export type RpcCalls = {
  readonly [M in MethodName]: (
    params: ParamsOf<M>,
    options?: CallOptions,
  ) => Promise<RpcResult<ResultOf<M>>>;
};

/** Why the connection ended. */
export interface CloseInfo {
  /** Human-readable reason, e.g. "satellite closed its output". */
  readonly reason: string;
  /** True for protocol violations and stream errors, false for an orderly end. */
  readonly error: boolean;
}

/** Options of {@link RpcClient}. */
export interface RpcClientOptions {
  /** When set, the handshake fails unless the satellite reports this build id. */
  expectedBuildId?: string;
  /** Default per-call timeout in milliseconds; 0 disables. Default 60000. */
  timeoutMs?: number;
  /** Observes every call's completion (for --debug traces). */
  onTrace?: (event: TraceEvent) => void;
  /**
   * Receives the change feed's events, in order with the results (called synchronously as each
   * frame is read, before the results read after it resolve their calls). A malformed event is
   * handed over as one OVERFLOW change: what it said is lost.
   */
  onEvent?: (changes: readonly Change[]) => void;
  /**
   * Bytes of bulk calls (reads and writes of at least 64 KiB) in flight at most; the others
   * wait, in order, while small calls go ahead. Default {@link BULK_IN_FLIGHT_BYTES}.
   */
  bulkBytes?: number;
}

/** A completed call, for tracing. */
export interface TraceEvent {
  readonly id: number;
  readonly method: MethodName;
  readonly params: unknown;
  readonly result: RpcResult<unknown>;
}

interface Pending {
  readonly method: MethodName;
  readonly params: unknown;
  readonly resolve: (r: RpcResult<unknown>) => void;
  /** When the call fails with EIO (`performance.now()` time; Infinity: never), and its limit. */
  readonly deadline: number;
  readonly timeoutMs: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Bytes the call holds in the bulk lane (0: not a bulk call). */
  bulk: number;
  /** Withdraws the call from the bulk lane while it waits there (true if it did). */
  withdraw: (() => boolean) | undefined;
}

const SMALL_FRAME = 64 * 1024;
/**
 * Default bytes of bulk calls in flight: two 1 MiB reads or writes keep the stream busy (one
 * transferred while the satellite serves the other) and are all a small call can queue behind.
 */
export const BULK_IN_FLIGHT_BYTES = 2 << 20;

/** Bytes a call moves when it is a bulk call (a read or write of at least 64 KiB), else 0. */
export function bulkCost(method: MethodName, params: unknown): number {
  if (method === "read") {
    const size = (params as { size?: unknown }).size;
    return typeof size === "number" && size >= LARGE_PAYLOAD_BYTES ? size : 0;
  }
  if (method === "write") {
    const data = (params as { data?: unknown }).data;
    return data instanceof Uint8Array && data.length >= LARGE_PAYLOAD_BYTES ? data.length : 0;
  }
  if (method === "readFiles") {
    const max = (params as { maxBytes?: unknown }).maxBytes;
    return typeof max === "number" && max >= LARGE_PAYLOAD_BYTES ? max : 0;
  }
  return 0;
}
/** How long close() lets requests already made be delivered and answered. */
const CLOSE_DRAIN_MS = 10_000;

function failure(code: string, message: string): RpcFailureResult {
  return { ok: false, errno: errnoNumber(code), code, message };
}

/**
 * A connection the client reads and writes itself (a `Deno.Conn`), without web streams: a
 * stream's read and write each cost a turn through its queues (an 8 KiB write through a
 * socket's writable took 45–63 µs here, its own `write` 19 µs).
 */
export interface RawConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  /** Ends the writing side: the satellite reads end of file and exits. */
  closeWrite(): Promise<void>;
  close(): void;
}

/** The client's side of the byte stream, over web streams or a {@link RawConn}. */
interface Io {
  /**
   * The next bytes read (never written again: results may be views into them), null at end.
   * With `into`, the Io may read into it instead (the view it filled is returned).
   */
  read(into?: Uint8Array): Promise<Uint8Array | null>;
  write(bytes: Uint8Array): Promise<void>;
  /** Ends writing (aborts, with `error`) and reading; never waits for a stuck writer. */
  end(error: boolean, reason: string): Promise<void>;
}

function streamIo(readable: ReadableStream<Uint8Array>, writable: WritableStream<Uint8Array>): Io {
  const writer = writable.getWriter();
  const reader = readable.getReader();
  return {
    read: async () => {
      const { value, done } = await reader.read();
      return done ? null : value;
    },
    write: (bytes) => writer.write(bytes),
    end: (error, reason) => {
      (error ? writer.abort(reason) : writer.close()).catch(() => {});
      return reader.cancel(reason).catch(() => {});
    },
  };
}

/** Bytes of each buffer raw reads fill in turn, and the least room a read is given. */
const RAW_BUFFER_BYTES = 128 * 1024;
const RAW_READ_MIN_BYTES = 32 * 1024;

/** Reads land in a buffer, one after another: a region handed out is never read into again. */
function rawIo(conn: RawConn): Io {
  let buffer = new Uint8Array(RAW_BUFFER_BYTES);
  let at = 0;
  return {
    read: async (into) => {
      if (into !== undefined) {
        const n = await conn.read(into);
        return n === null ? null : into.subarray(0, n);
      }
      if (buffer.length - at < RAW_READ_MIN_BYTES) {
        buffer = new Uint8Array(RAW_BUFFER_BYTES);
        at = 0;
      }
      const n = await conn.read(buffer.subarray(at));
      if (n === null) return null;
      const bytes = buffer.subarray(at, at + n);
      at += n;
      return bytes;
    },
    write: async (bytes) => {
      for (let done = 0; done < bytes.length;) {
        done += await conn.write(done === 0 ? bytes : bytes.subarray(done));
      }
    },
    end: (error) => {
      // Without an error the connection stays open for the answers still coming.
      try {
        if (error) conn.close();
        else conn.closeWrite().catch(() => {});
      } catch { /* already closed */ }
      return Promise.resolve();
    },
  };
}

/**
 * Client side of the protocol over injected byte streams (the satellite's stdout and stdin), or
 * a connection used directly. Bytes read must not be modified afterwards: results may be views
 * into them.
 */
export class RpcClient {
  /** Typed calls, e.g. `await client.call.read({ handle, offset: 0n, size: 4096 })`. */
  readonly call: RpcCalls;
  /** Resolves with the satellite's handshake; rejects (with a clear message) on mismatch. */
  readonly ready: Promise<Hello>;
  /** Resolves once when the connection has ended, with the reason. */
  readonly closed: Promise<CloseInfo>;

  readonly #io: Io;
  readonly #packr: Packr = createPackr();
  readonly #unpackr: Unpackr = createUnpackr();
  readonly #decoder = new FrameDecoder(MAX_FRAME_BYTES);
  readonly #pending = new Map<number, Pending>();
  readonly #timeoutMs: number;
  readonly #expectedBuildId: string | undefined;
  readonly #onTrace: ((event: TraceEvent) => void) | undefined;
  readonly #onEvent: ((changes: readonly Change[]) => void) | undefined;
  readonly #lane: BulkLane;
  #nextId = 1;
  #queue: Uint8Array[] = [];
  #flushing = false;
  /**
   * One timer for every call's deadline, armed for the earliest one known (per-call timers took
   * 3-4 % of the JavaScript thread's time on small-file workloads). It keeps the process alive
   * only while calls are pending.
   */
  #deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity;
  #hello: Hello | undefined;
  #closeInfo: CloseInfo | undefined;
  /** Set while close() drains: new calls fail. */
  #closing = false;
  /** Woken when the connection may have become idle (see #drain). */
  #onIdle: (() => void) | undefined;
  #resolveReady!: (hello: Hello) => void;
  #rejectReady!: (error: Error) => void;
  #resolveClosed!: (info: CloseInfo) => void;

  constructor(
    readable: ReadableStream<Uint8Array>,
    writable: WritableStream<Uint8Array>,
    options?: RpcClientOptions,
  );
  constructor(conn: RawConn, options?: RpcClientOptions);
  constructor(
    from: ReadableStream<Uint8Array> | RawConn,
    writableOrOptions?: WritableStream<Uint8Array> | RpcClientOptions,
    maybeOptions?: RpcClientOptions,
  ) {
    let options: RpcClientOptions;
    if (from instanceof ReadableStream) {
      this.#io = streamIo(from, writableOrOptions as WritableStream<Uint8Array>);
      options = maybeOptions ?? {};
    } else {
      this.#io = rawIo(from);
      options = (writableOrOptions as RpcClientOptions | undefined) ?? {};
    }
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.#expectedBuildId = options.expectedBuildId;
    this.#onTrace = options.onTrace;
    this.#onEvent = options.onEvent;
    this.#lane = new BulkLane(options.bulkBytes ?? BULK_IN_FLIGHT_BYTES);
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(() => {}); // observed through `closed` too
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    const call: Record<string, unknown> = {};
    for (const method of Object.keys(METHODS)) {
      if (!isMethodName(method)) continue;
      call[method] = (params: unknown, opts?: CallOptions) => this.#call(method, params, opts);
    }
    this.call = call as RpcCalls;
    this.#readLoop();
  }

  /** The satellite's handshake, once `ready` has resolved. */
  get hello(): Hello | undefined {
    return this.#hello;
  }

  /** Calls sent and not yet answered. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Bytes of bulk calls on the stream, and bulk calls waiting for their turn. */
  get bulk(): { inFlight: number; waiting: number } {
    return { inFlight: this.#lane.inFlight, waiting: this.#lane.waiting };
  }

  /** True once the connection has ended. */
  get isClosed(): boolean {
    return this.#closeInfo !== undefined;
  }

  /**
   * Ends the connection: requests already made (queued or sent; write-behind writes the kernel
   * was told are done) are first delivered and answered, for at most `drainMs`; then the
   * satellite's stdin closes (it exits) and calls still unanswered fail with EIO, which the
   * close reason counts. New calls fail from the start. Resolves when done.
   */
  async close(reason = "closed by the client", drainMs = CLOSE_DRAIN_MS): Promise<void> {
    if (this.#closeInfo === undefined && !this.#closing) {
      this.#closing = true;
      const left = this.#hello ? await this.#drain(drainMs) : 0;
      if (left > 0) reason += ` (${left} unanswered request(s) abandoned after ${drainMs} ms)`;
    }
    this.#finish(reason, false);
    await this.closed;
  }

  /** Waits until nothing is queued or unanswered (or `ms` pass); returns the unanswered count. */
  async #drain(ms: number): Promise<number> {
    const deadline = Date.now() + ms;
    while (this.#closeInfo === undefined && !this.#idle()) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#onIdle = undefined;
          resolve();
        }, left);
        this.#onIdle = () => {
          this.#onIdle = undefined;
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.#closeInfo === undefined ? this.#pending.size + this.#queue.length : 0;
  }

  #idle(): boolean {
    return this.#pending.size === 0 && this.#queue.length === 0 && !this.#flushing;
  }

  #wake(): void {
    if (this.#onIdle && (this.#closeInfo !== undefined || this.#idle())) this.#onIdle();
  }

  #call(method: MethodName, params: unknown, options?: CallOptions): Promise<RpcResult<unknown>> {
    if (this.#closeInfo) {
      return Promise.resolve(failure("EIO", `connection closed: ${this.#closeInfo.reason}`));
    }
    if (this.#closing) return Promise.resolve(failure("EIO", "connection closing"));
    const signal = options?.signal;
    if (signal?.aborted) return Promise.resolve(failure("EINTR", `${method} cancelled`));
    let frame: Uint8Array;
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    try {
      frame = encodeRequest(this.#packr, id, method, params);
    } catch (e) {
      return Promise.resolve(failure("EINVAL", `cannot encode ${method} params: ${e}`));
    }
    if (frame.length - 4 > MAX_FRAME_BYTES) {
      return Promise.resolve(failure("EINVAL", `${method} request exceeds the frame limit`));
    }
    return new Promise((resolve) => {
      const timeoutMs = options?.timeoutMs ?? this.#timeoutMs;
      const deadline = timeoutMs > 0 ? performance.now() + timeoutMs : Infinity;
      const pending: Pending = {
        method,
        params,
        resolve,
        deadline,
        timeoutMs,
        signal,
        onAbort: undefined,
        bulk: bulkCost(method, params),
        withdraw: undefined,
      };
      if (deadline < this.#armedFor) this.#armDeadlines(deadline);
      else if (this.#pending.size === 0) this.#deadlineTimer?.ref();
      if (signal) {
        pending.onAbort = () => this.#complete(id, failure("EINTR", `${method} cancelled`));
        signal.addEventListener("abort", pending.onAbort, { once: true });
      }
      this.#pending.set(id, pending);
      if (pending.bulk === 0) {
        this.#send(frame);
        return;
      }
      let started = false;
      let markSent: (() => void) | undefined;
      pending.withdraw = this.#lane.enter(pending.bulk, () => {
        started = true;
        this.#send(frame);
        markSent?.();
      });
      if (!started && options?.onHeld) {
        options.onHeld(new Promise<void>((resolve) => (markSent = resolve)));
      }
    });
  }

  #complete(id: number, result: RpcResult<unknown>): void {
    const pending = this.#pending.get(id);
    if (!pending) return; // late answer after timeout/cancel
    this.#pending.delete(id);
    if (this.#pending.size === 0) this.#deadlineTimer?.unref();
    if (pending.bulk > 0 && !pending.withdraw?.()) this.#lane.leave(pending.bulk);
    if (pending.onAbort) pending.signal?.removeEventListener("abort", pending.onAbort);
    if (this.#onTrace) {
      this.#onTrace({ id, method: pending.method, params: pending.params, result });
    }
    pending.resolve(result);
    this.#wake();
  }

  #send(frame: Uint8Array): void {
    if (this.#closeInfo) return;
    this.#queue.push(frame);
    if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #armDeadlines(at: number): void {
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer);
    this.#armedFor = at;
    this.#deadlineTimer = setTimeout(
      () => this.#expire(),
      Math.max(0, Math.ceil(at - performance.now())),
    );
  }

  /** Fails the calls past their deadline; arms the timer for the earliest one left. */
  #expire(): void {
    this.#deadlineTimer = undefined;
    this.#armedFor = Infinity;
    if (this.#closeInfo) return;
    const now = performance.now();
    let next = Infinity;
    for (const [id, pending] of this.#pending) {
      if (pending.deadline <= now) {
        this.#complete(
          id,
          failure("EIO", `${pending.method} timed out after ${pending.timeoutMs} ms`),
        );
      } else if (pending.deadline < next) next = pending.deadline;
    }
    if (next < Infinity) this.#armDeadlines(next);
  }

  /** Writes queued frames, coalescing small ones into one chunk. */
  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closeInfo) {
        const frames = this.#queue;
        this.#queue = [];
        let i = 0;
        while (i < frames.length) {
          let j = i;
          let total = 0;
          while (j < frames.length && (j === i || total + frames[j].length <= SMALL_FRAME)) {
            total += frames[j].length;
            j++;
          }
          let chunk: Uint8Array;
          if (j - i === 1) {
            chunk = frames[i];
          } else {
            chunk = new Uint8Array(total);
            let at = 0;
            for (let k = i; k < j; k++) {
              chunk.set(frames[k], at);
              at += frames[k].length;
            }
          }
          i = j;
          await this.#io.write(chunk);
        }
      }
    } catch (e) {
      this.#finish(`cannot write to the satellite: ${e instanceof Error ? e.message : e}`, true);
    } finally {
      this.#flushing = false;
      this.#wake();
    }
  }

  async #readLoop(): Promise<void> {
    const onFrame = (body: Uint8Array) => this.#onFrame(body);
    try {
      while (!this.#closeInfo) {
        // The rest of a large frame is read into its body: no copy, and no fresh buffer
        // (each new page costs a fault) for bytes that are copied out at once.
        const value = await this.#io.read(this.#decoder.room(RAW_READ_MIN_BYTES));
        if (value === null) {
          this.#finish(
            this.#hello ? "satellite closed its output" : "satellite exited before the handshake",
            this.#pending.size > 0 || !this.#hello,
          );
          return;
        }
        const error = this.#decoder.push(value, onFrame);
        if (error) {
          this.#finish(`protocol error from the satellite: ${error}`, true);
          return;
        }
      }
    } catch (e) {
      this.#finish(`cannot read from the satellite: ${e instanceof Error ? e.message : e}`, true);
    }
  }

  #onFrame(body: Uint8Array): void {
    if (this.#closeInfo) return;
    const decoded = decodeBody(this.#unpackr, body);
    if (!decoded.ok) {
      this.#finish(`protocol error from the satellite: ${decoded.error}`, true);
      return;
    }
    const message = decoded.value;
    const kind = message[0];
    if (!this.#hello && kind !== Kind.HELLO && kind !== Kind.FATAL) {
      this.#finish("protocol error from the satellite: no handshake", true);
      return;
    }
    switch (kind) {
      case Kind.RESULT: {
        const id = message[1];
        if (typeof id !== "number") break;
        const pending = this.#pending.get(id);
        if (!pending) return;
        const value = METHODS[pending.method].result.parse(message[2]);
        this.#complete(
          id,
          value === INVALID
            ? failure("EIO", `malformed ${pending.method} result from the satellite`)
            : { ok: true, value },
        );
        return;
      }
      case Kind.ERROR: {
        const id = message[1];
        if (typeof id !== "number") break;
        const code = typeof message[2] === "string" ? message[2] : "EIO";
        const text = str(4096).parse(message[3]);
        this.#complete(
          id,
          failure(
            Object.hasOwn(ERRNO_NUMBERS, code) ? code : "EIO",
            text === INVALID ? code : text,
          ),
        );
        return;
      }
      case Kind.HELLO: {
        if (this.#hello) break;
        const hello = helloSchema.parse(message[1]);
        if (hello === INVALID) {
          this.#finish("protocol error from the satellite: malformed handshake", true);
          return;
        }
        if (hello.protocol !== PROTOCOL_VERSION) {
          this.#finish(
            `satellite speaks protocol ${hello.protocol}, this client ${PROTOCOL_VERSION}: ` +
              "the satellite bundle is stale (run `deno task build-satellite`)",
            true,
          );
          return;
        }
        if (this.#expectedBuildId !== undefined && hello.buildId !== this.#expectedBuildId) {
          this.#finish(
            `satellite build ${hello.buildId} does not match the bundle's ${this.#expectedBuildId}`,
            true,
          );
          return;
        }
        this.#hello = hello;
        this.#resolveReady(hello);
        return;
      }
      case Kind.EVENT: {
        const event = eventSchema.parse(message[1]);
        this.#onEvent?.(
          event === INVALID ? [{ dir: "", what: ChangeKind.OVERFLOW }] : event.changes,
        );
        return;
      }
      case Kind.FATAL: {
        const text = str(4096).parse(message[1]);
        this.#finish(
          `satellite failed: ${text === INVALID ? "(no message)" : text}`,
          true,
        );
        return;
      }
    }
    this.#finish(`protocol error from the satellite: unexpected message kind ${kind}`, true);
  }

  #finish(reason: string, error: boolean): void {
    if (this.#closeInfo) return;
    const info = { reason, error };
    this.#closeInfo = info;
    this.#queue = [];
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
    for (const id of [...this.#pending.keys()]) {
      this.#complete(id, failure("EIO", `connection closed: ${reason}`));
    }
    if (!this.#hello) this.#rejectReady(new Error(`Cannot start the satellite: ${reason}`));
    // The writer may be stuck on a full pipe: do not wait for it.
    this.#io.end(error, reason).finally(() => this.#resolveClosed(info));
    this.#wake();
  }
}
