/**
 * Frames and messages on the byte stream.
 *
 * A frame is a 4-byte big-endian body length followed by the body, one msgpack value:
 * - `[0, id, method, params]` request (client → satellite)
 * - `[1, id, result]` success
 * - `[2, id, errnoName, message]` failure
 * - `[3, hello]` handshake, the satellite's first frame
 * - `[4, message]` fatal protocol error, the satellite's last frame
 * - `[5, event]` change feed event, unasked (satellite → client; see `eventSchema`)
 *
 * Binary values travel as msgpack bin and decode as views into the frame (no copy).
 *
 * @module
 */

// "msgpackr/pack" resolves to msgpackr's pure-JS entry under Deno's conditions: no native
// addon loader (which would probe the system with child processes inside containers).
import { Packr, RESERVE_START_SPACE, RESET_BUFFER_MODE, Unpackr } from "msgpackr/pack";
import { MAX_FRAME_BYTES } from "./methods.ts";

/** Message kinds (first array element). */
export const Kind = { REQUEST: 0, RESULT: 1, ERROR: 2, HELLO: 3, FATAL: 4, EVENT: 5 } as const;

/** Bytes of the length prefix. */
export const FRAME_HEADER_BYTES = 4;

/**
 * Length of the whole frame at the start of `bytes` (header included), undefined while it is
 * not all there, 0 when its header is impossible (an empty or oversized body).
 */
export function firstFrameLength(bytes: Uint8Array): number | undefined {
  if (bytes.length < FRAME_HEADER_BYTES) return undefined;
  const length = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
  if (length === 0 || length > MAX_FRAME_BYTES) return 0;
  return bytes.length >= FRAME_HEADER_BYTES + length ? FRAME_HEADER_BYTES + length : undefined;
}

/** A msgpack encoder with the protocol's settings (bigint → 64-bit ints, no records). */
export function createPackr(): Packr {
  return new Packr({ useRecords: false, encodeUndefinedAsNil: true });
}

/** A msgpack decoder with the protocol's settings (64-bit ints → bigint, bin as views). */
export function createUnpackr(): Unpackr {
  return new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: "bigint" });
}

/**
 * Encodes `message` as one frame (length prefix included). Throws only on unencodable input.
 * With `reuse`, the frame is a view that `packr`'s next encoding overwrites (no buffer is
 * allocated for it once `packr`'s has grown to the largest frame); without, it stays valid.
 */
export function encodeFrame(packr: Packr, message: unknown, reuse = false): Uint8Array {
  const mode = reuse ? RESET_BUFFER_MODE : 0;
  const frame = packr.pack(message, RESERVE_START_SPACE | FRAME_HEADER_BYTES | mode);
  const bodyLength = frame.length - FRAME_HEADER_BYTES;
  frame[0] = bodyLength >>> 24;
  frame[1] = (bodyLength >>> 16) & 0xff;
  frame[2] = (bodyLength >>> 8) & 0xff;
  frame[3] = bodyLength & 0xff;
  return frame;
}

/** A byte payload at least this large is put into a request frame directly (see below). */
export const LARGE_PAYLOAD_BYTES = 64 * 1024;
const NO_BYTES = new Uint8Array(0);

/**
 * Encodes a request frame. When the params' last field is a large byte payload (a write's data),
 * msgpackr packs the rest with an empty payload and the payload is copied once into a frame of
 * exact size: msgpackr itself would grow its buffer to four times the frame, zeroed, per request
 * (measured: 16 % of the client's time writing 256 MiB). The bytes are those msgpackr would give.
 */
export function encodeRequest(
  packr: Packr,
  id: number,
  method: string,
  params: unknown,
): Uint8Array {
  const fields = params !== null && typeof params === "object" && !(params instanceof Uint8Array)
    ? params as Readonly<Record<string, unknown>>
    : {};
  const keys = Object.keys(fields);
  const last = keys[keys.length - 1];
  const payload = last === undefined ? undefined : fields[last];
  if (!(payload instanceof Uint8Array) || payload.length < LARGE_PAYLOAD_BYTES) {
    return encodeFrame(packr, [Kind.REQUEST, id, method, params]);
  }
  const head = encodeFrame(packr, [Kind.REQUEST, id, method, { ...fields, [last!]: NO_BYTES }]);
  // The empty payload is the frame's last two bytes (bin8, length 0): bin32 takes its place.
  const keep = head.length - 2;
  if (head[keep] !== 0xc4 || head[keep + 1] !== 0) {
    return encodeFrame(packr, [Kind.REQUEST, id, method, params]);
  }
  const frame = new Uint8Array(keep + 5 + payload.length);
  frame.set(head.subarray(0, keep));
  const view = new DataView(frame.buffer);
  frame[keep] = 0xc6;
  view.setUint32(keep + 1, payload.length);
  frame.set(payload, keep + 5);
  view.setUint32(0, frame.length - FRAME_HEADER_BYTES);
  return frame;
}

/** Decodes a frame body; never throws. */
export function decodeBody(
  unpackr: Unpackr,
  body: Uint8Array,
): { ok: true; value: unknown[] } | { ok: false; error: string } {
  let value: unknown;
  // Decode from a plain Uint8Array so bin values are plain views too (a Buffer's slice()
  // does not copy, a surprise for callers).
  const source = body.constructor === Uint8Array
    ? body
    : new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  try {
    value = unpackr.unpack(source);
  } catch (e) {
    return {
      ok: false,
      error: `undecodable frame (${e instanceof Error ? e.message : String(e)})`,
    };
  }
  if (!Array.isArray(value) || value.length < 2 || typeof value[0] !== "number") {
    return { ok: false, error: "frame is not a protocol message" };
  }
  return { ok: true, value };
}

/** Printable preview of bytes, for error messages about garbage on the stream. */
export function preview(bytes: Uint8Array, max = 48): string {
  let s = "";
  for (let i = 0; i < Math.min(bytes.length, max); i++) {
    const b = bytes[i];
    s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return bytes.length > max ? s + "…" : s;
}

/**
 * Splits a byte stream into frame bodies. Complete frames inside one chunk are handed out as
 * views into it (no copy); frames spanning chunks are assembled. Never throws: a bad length
 * poisons the decoder and returns the error.
 */
export class FrameDecoder {
  readonly #maxFrameBytes: number;
  readonly #header = new Uint8Array(FRAME_HEADER_BYTES);
  #headerFill = 0;
  #body: Uint8Array | null = null;
  #bodyFill = 0;
  #error: string | undefined;
  #seen = 0;

  constructor(maxFrameBytes: number = MAX_FRAME_BYTES) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** True when no partial frame is buffered. */
  get idle(): boolean {
    return this.#headerFill === 0 && this.#body === null;
  }

  /**
   * Where the next bytes of the body being assembled go, when at least `min` of it are still
   * missing: a reader may read into it, then `push` the view it filled (not copied again).
   */
  room(min: number): Uint8Array | undefined {
    const body = this.#body;
    if (body === null || body.length - this.#bodyFill < min) return undefined;
    return body.subarray(this.#bodyFill);
  }

  /** Feeds a chunk; calls `onFrame` per complete body. Returns an error string if the stream is bad. */
  push(chunk: Uint8Array, onFrame: (body: Uint8Array) => void): string | undefined {
    if (this.#error !== undefined) return this.#error;
    let pos = 0;
    const end = chunk.length;
    while (pos < end) {
      if (this.#body !== null) {
        const n = Math.min(end - pos, this.#body.length - this.#bodyFill);
        // Read into `room()`: already where it belongs.
        const inPlace = pos === 0 && chunk.buffer === this.#body.buffer &&
          chunk.byteOffset === this.#body.byteOffset + this.#bodyFill;
        if (!inPlace) this.#body.set(chunk.subarray(pos, pos + n), this.#bodyFill);
        this.#bodyFill += n;
        pos += n;
        if (this.#bodyFill === this.#body.length) {
          const body = this.#body;
          this.#body = null;
          this.#bodyFill = 0;
          this.#seen++;
          onFrame(body);
        }
        continue;
      }
      let length: number;
      if (this.#headerFill === 0 && end - pos >= FRAME_HEADER_BYTES) {
        length = ((chunk[pos] << 24) | (chunk[pos + 1] << 16) | (chunk[pos + 2] << 8) |
          chunk[pos + 3]) >>> 0;
        const error = this.#check(length, chunk.subarray(pos));
        if (error) return error;
        pos += FRAME_HEADER_BYTES;
        if (end - pos >= length) {
          this.#seen++;
          onFrame(chunk.subarray(pos, pos + length));
          pos += length;
          continue;
        }
      } else {
        const n = Math.min(end - pos, FRAME_HEADER_BYTES - this.#headerFill);
        this.#header.set(chunk.subarray(pos, pos + n), this.#headerFill);
        this.#headerFill += n;
        pos += n;
        if (this.#headerFill < FRAME_HEADER_BYTES) continue;
        this.#headerFill = 0;
        const h = this.#header;
        length = ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0;
        const error = this.#check(length, h);
        if (error) return error;
      }
      this.#body = new Uint8Array(length);
      this.#bodyFill = 0;
    }
    return undefined;
  }

  #check(length: number, head: Uint8Array): string | undefined {
    if (length === 0) {
      this.#error = "empty frame";
    } else if (length > this.#maxFrameBytes) {
      this.#error = `frame of ${length} bytes exceeds the maximum of ${this.#maxFrameBytes}` +
        (this.#seen === 0 ? ` (not a protocol stream? it starts with "${preview(head)}")` : "");
    }
    return this.#error;
  }
}
