/**
 * Demultiplexer for Docker's attach stream framing (Tty false): each frame is an 8-byte header
 * [stream type, 0, 0, 0, size (u32 big endian)] followed by `size` payload bytes.
 * Stream types: 0 stdin (delivered as stdout, as the Docker CLI does), 1 stdout, 2 stderr,
 * 3 an error message from the engine.
 *
 * Invariants: never throws on any input; payload bytes are forwarded as they arrive (a frame is
 * never buffered whole), as subarrays of the pushed chunks, so pushed chunks must not be reused.
 */

export interface DemuxSink {
  stdout(chunk: Uint8Array): void;
  stderr(chunk: Uint8Array): void;
}

/** Result of feeding bytes: ok, or why the stream is unusable from here on. */
export type DemuxResult = { ok: true } | { ok: false; error: string };

const OK: DemuxResult = { ok: true };
/** Longest engine error message kept (type 3 frames); the rest is dropped. */
const MAX_SYSTEM_ERROR = 64 * 1024;

export class Demuxer {
  #sink: DemuxSink;
  #header = new Uint8Array(8);
  #headerFill = 0;
  /** payload bytes still to come for the current frame */
  #remaining = 0;
  #type = 0;
  #systemError: Uint8Array[] = [];
  #systemErrorLength = 0;
  #failed: string | undefined;

  constructor(sink: DemuxSink) {
    this.#sink = sink;
  }

  /** Feeds bytes. After an error result, further input is ignored and the same error returned. */
  push(chunk: Uint8Array): DemuxResult {
    if (this.#failed !== undefined) return { ok: false, error: this.#failed };
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, chunk.length - offset);
        this.#deliver(chunk.subarray(offset, offset + take));
        offset += take;
        this.#remaining -= take;
        if (this.#remaining === 0 && this.#type === 3) return this.#systemErrorResult();
        continue;
      }
      const take = Math.min(8 - this.#headerFill, chunk.length - offset);
      this.#header.set(chunk.subarray(offset, offset + take), this.#headerFill);
      this.#headerFill += take;
      offset += take;
      if (this.#headerFill < 8) break;
      this.#headerFill = 0;
      const type = this.#header[0];
      const size = ((this.#header[4] << 24) >>> 0) + (this.#header[5] << 16) +
        (this.#header[6] << 8) + this.#header[7];
      if (type > 3) {
        return this.#fail(`invalid stream type ${type} in the exec stream framing`);
      }
      this.#type = type;
      this.#remaining = size;
      if (size === 0 && type === 3) return this.#systemErrorResult();
    }
    return OK;
  }

  /** Ends the input: an error if the stream stopped inside a frame. */
  finish(): DemuxResult {
    if (this.#failed !== undefined) return { ok: false, error: this.#failed };
    if (this.#headerFill > 0 || this.#remaining > 0) {
      return this.#fail("the exec stream ended inside a frame");
    }
    return OK;
  }

  #deliver(payload: Uint8Array): void {
    switch (this.#type) {
      case 0:
      case 1:
        this.#sink.stdout(payload);
        break;
      case 2:
        this.#sink.stderr(payload);
        break;
      default: {
        const room = MAX_SYSTEM_ERROR - this.#systemErrorLength;
        if (room > 0) {
          const kept = payload.subarray(0, room);
          this.#systemError.push(kept.slice());
          this.#systemErrorLength += kept.length;
        }
      }
    }
  }

  #systemErrorResult(): DemuxResult {
    const bytes = new Uint8Array(this.#systemErrorLength);
    let at = 0;
    for (const part of this.#systemError) {
      bytes.set(part, at);
      at += part.length;
    }
    const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes).trim();
    return this.#fail(`the engine reported: ${text === "" ? "an unspecified error" : text}`);
  }

  #fail(error: string): DemuxResult {
    this.#failed = error;
    return { ok: false, error };
  }
}
