/**
 * The satellite side: a dispatcher typed from the method table. It validates each request,
 * calls the handler synchronously and encodes the response frame; a handler may instead return
 * a {@link Later}, whose frame goes to the dispatcher's `onLate` sink once it is settled.
 *
 * @module
 */

import type { Packr, Unpackr } from "msgpackr/pack";
import type { ErrnoName } from "./errno.ts";
import {
  type ChangeEvent,
  type Hello,
  isMethodName,
  type MethodName,
  METHODS,
  type ParamsOf,
  type WireResultOf,
} from "./methods.ts";
import { INVALID } from "./schema.ts";
import {
  createPackr,
  createUnpackr,
  decodeBody,
  encodeFrame,
  FRAME_HEADER_BYTES,
  Kind,
} from "./wire.ts";

/** A handler's failure: an errno name and an optional message. */
export class RpcFailure {
  readonly code: ErrnoName;
  readonly message: string | undefined;
  constructor(code: ErrnoName, message?: string) {
    this.code = code;
    this.message = message;
  }
}

/** Bytes of a BytesReply frame before the data: length, fixarray, kind, uint32 id, bin32 length. */
const BYTES_REPLY_HEADER = FRAME_HEADER_BYTES + 1 + 1 + 5 + 5;

/**
 * A bytes result written in place: the handler fills `data` (e.g. pread straight into it) and
 * sets `length`; the dispatcher adds the header around it, so the payload is never copied.
 */
export class BytesReply {
  /** The whole frame buffer, header space included. */
  readonly frame: Uint8Array;
  /** Where the handler writes the payload (capacity bytes). */
  readonly data: Uint8Array;
  /** Payload bytes actually written. */
  length = 0;
  /**
   * `backing` (optional) is reused memory of at least `BytesReply.bytesFor(capacity)` bytes;
   * the frame then stays valid only until the backing is reused.
   */
  constructor(capacity: number, backing?: Uint8Array) {
    const size = BYTES_REPLY_HEADER + capacity;
    this.frame = backing && backing.length >= size
      ? backing.subarray(0, size)
      : new Uint8Array(size);
    this.data = this.frame.subarray(BYTES_REPLY_HEADER);
  }

  /** Bytes of frame memory a reply of `capacity` payload bytes needs. */
  static bytesFor(capacity: number): number {
    return BYTES_REPLY_HEADER + capacity;
  }
}

/** An answer given right away: the result or a failure; bytes results may be a BytesReply. */
export type NowReply<R> = R | RpcFailure | (R extends Uint8Array ? BytesReply : never);

/**
 * An answer given later (work running off the main thread): the handler returns it at once and
 * settles it, once, when the work is done. Its frame is built when it settles (so a BytesReply
 * or a view into a buffer must stay valid only until `settle` returns).
 */
export class Later<R> {
  #sink: ((reply: NowReply<R>) => void) | undefined;
  #early: { reply: NowReply<R> } | undefined;

  /** Gives the answer (the first call counts). */
  settle(reply: NowReply<R>): void {
    if (this.#sink) {
      const sink = this.#sink;
      this.#sink = () => {};
      sink(reply);
    } else if (!this.#early) this.#early = { reply };
  }

  /** Where the answer goes (the dispatcher); an answer given before is passed on at once. */
  bind(sink: (reply: NowReply<R>) => void): void {
    if (this.#early) sink(this.#early.reply);
    else this.#sink = sink;
  }
}

/** What a handler returns: an answer now, or a {@link Later}. */
export type Reply<R> = NowReply<R> | Later<R>;

/** One synchronous handler per method of the table. */
export type Handlers = {
  readonly [M in MethodName]: (params: ParamsOf<M>) => Reply<WireResultOf<M>>;
};

/** A request decoded and checked, not yet run ({@link Dispatcher.decode}). */
export class DecodedRequest {
  readonly id: number;
  readonly method: MethodName;
  readonly params: unknown;
  constructor(id: number, method: MethodName, params: unknown) {
    this.id = id;
    this.method = method;
    this.params = params;
  }
}

/** A fatal protocol error: the connection must be closed after sending `frame`. */
export interface Fatal {
  readonly fatal: string;
  readonly frame: Uint8Array;
}

/** Decodes requests, calls handlers, encodes responses. */
export class Dispatcher {
  readonly #handlers: Handlers;
  readonly #packr: Packr = createPackr();
  readonly #unpackr: Unpackr = createUnpackr();
  readonly #onError: ((method: string, error: unknown) => void) | undefined;
  readonly #onLate: ((frame: Uint8Array) => void) | undefined;
  readonly #reuse: boolean;

  /**
   * `onError` observes handler exceptions (they answer EIO); `onLate` takes the frames of
   * answers handlers give later (required when a handler may return a {@link Later}). With
   * `reuseFrames`, every frame returned (or given to `onLate`) is valid only until the next one
   * is made by any msgpackr encoder of the process (they share one buffer): its bytes must be
   * written or copied first (the satellite's output does), and large answers then cost no new
   * buffer each.
   */
  constructor(
    handlers: Handlers,
    onError?: (method: string, error: unknown) => void,
    onLate?: (frame: Uint8Array) => void,
    options: { reuseFrames?: boolean } = {},
  ) {
    this.#handlers = handlers;
    this.#onError = onError;
    this.#onLate = onLate;
    this.#reuse = options.reuseFrames ?? false;
  }

  /** The handshake frame, sent first. */
  helloFrame(hello: Hello): Uint8Array {
    return this.#frame([Kind.HELLO, hello]);
  }

  /** A change feed event frame (unasked). */
  eventFrame(event: ChangeEvent): Uint8Array {
    return this.#frame([Kind.EVENT, event]);
  }

  /** The frame announcing a fatal protocol error, sent last. */
  fatalFrame(message: string): Uint8Array {
    return this.#frame([Kind.FATAL, message]);
  }

  /**
   * Handles one request frame body; returns the response frame, a Fatal, or undefined when the
   * answer comes later (through `onLate`). Never throws.
   */
  handle(body: Uint8Array): Uint8Array | Fatal | undefined {
    const request = this.decode(body);
    return request instanceof DecodedRequest ? this.run(request) : request;
  }

  /**
   * Decodes and checks one request frame body: the request to {@link run}, or what answers it
   * at once (an error frame, or a Fatal). Never throws. The params may be views into `body`.
   */
  decode(body: Uint8Array): DecodedRequest | Uint8Array | Fatal {
    const decoded = decodeBody(this.#unpackr, body);
    if (!decoded.ok) return this.#fatal(decoded.error);
    const message = decoded.value;
    const id = message[1];
    if (message[0] !== Kind.REQUEST || typeof id !== "number" || !(id >= 0 && id <= 0xffffffff)) {
      return this.#fatal("expected a request");
    }
    const method = message[2];
    if (!isMethodName(method)) {
      return this.#error(id, "ENOSYS", `unknown method ${String(method).slice(0, 64)}`);
    }
    const params = METHODS[method].params.parse(message[3]);
    if (params === INVALID) {
      return this.#error(id, "EINVAL", `invalid ${method} params`);
    }
    return new DecodedRequest(id, method, params);
  }

  /**
   * Calls the handler of a decoded request: the response frame, or undefined when the answer
   * comes later (through `onLate`). Never throws.
   */
  run(request: DecodedRequest): Uint8Array | undefined {
    const { id, method } = request;
    let reply: unknown;
    try {
      reply = (this.#handlers[method] as (p: unknown) => unknown)(request.params);
    } catch (e) {
      this.#onError?.(method, e);
      return this.#error(id, "EIO", `${method} failed: ${e instanceof Error ? e.message : e}`);
    }
    if (reply instanceof Later) {
      const sink = this.#onLate;
      if (!sink) return this.#error(id, "EIO", `${method} answered late without a sink`);
      reply.bind((late) => sink(this.#answer(id, method, late)));
      return undefined;
    }
    return this.#answer(id, method, reply);
  }

  /**
   * The answer `value` to a decoded request whose handler is not run (a walk answered empty, see
   * `Order` in methods.ts). Never throws.
   */
  answer<M extends MethodName>(
    request: DecodedRequest & { readonly method: M },
    value: WireResultOf<M>,
  ): Uint8Array {
    return this.#answer(request.id, request.method, value);
  }

  #answer(id: number, method: string, reply: unknown): Uint8Array {
    if (reply instanceof RpcFailure) return this.#error(id, reply.code, reply.message);
    if (reply instanceof BytesReply) return bytesFrame(id, reply);
    try {
      const encode = METHODS[method as MethodName].result.encode as
        | ((value: unknown) => unknown)
        | undefined;
      return this.#frame([Kind.RESULT, id, encode ? encode(reply) : reply]);
    } catch (e) {
      this.#onError?.(method, e);
      return this.#error(id, "EIO", `${method} result cannot be encoded`);
    }
  }

  /** `message` as a frame, made as the constructor's `reuseFrames` says. */
  #frame(message: unknown[]): Uint8Array {
    return encodeFrame(this.#packr, message, this.#reuse);
  }

  #error(id: number, code: ErrnoName, message: string | undefined): Uint8Array {
    return this.#frame([Kind.ERROR, id, code, message ?? null]);
  }

  #fatal(message: string): Fatal {
    return { fatal: message, frame: this.fatalFrame(message) };
  }
}

function bytesFrame(id: number, reply: BytesReply): Uint8Array {
  const f = reply.frame;
  const n = reply.length;
  const bodyLength = BYTES_REPLY_HEADER - FRAME_HEADER_BYTES + n;
  const view = new DataView(f.buffer, f.byteOffset, BYTES_REPLY_HEADER);
  view.setUint32(0, bodyLength);
  f[4] = 0x93; // fixarray(3)
  f[5] = Kind.RESULT;
  f[6] = 0xce; // uint32
  view.setUint32(7, id);
  f[11] = 0xc6; // bin32
  view.setUint32(12, n);
  return f.subarray(0, BYTES_REPLY_HEADER + n);
}
