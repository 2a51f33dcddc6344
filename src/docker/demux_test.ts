import { Demuxer, type DemuxResult } from "./demux.ts";

function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

function frame(type: number, payload: Uint8Array | string): Uint8Array {
  const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const out = new Uint8Array(8 + bytes.length);
  out[0] = type;
  new DataView(out.buffer).setUint32(4, bytes.length);
  out.set(bytes, 8);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function collect(): { out: Uint8Array[]; err: Uint8Array[]; demuxer: Demuxer } {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const demuxer = new Demuxer({
    stdout: (c) => out.push(c.slice()),
    stderr: (c) => err.push(c.slice()),
  });
  return { out, err, demuxer };
}

const text = (parts: Uint8Array[]): string => new TextDecoder().decode(concat(parts));

/** Small deterministic PRNG (xorshift32) so fuzz failures are reproducible. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

Deno.test("demux separates stdout and stderr, stdin frames count as stdout", () => {
  const { out, err, demuxer } = collect();
  const input = concat([
    frame(1, "hello "),
    frame(2, "warn"),
    frame(0, "world"),
    frame(1, ""),
    frame(1, "!"),
  ]);
  assert(demuxer.push(input).ok);
  assert(demuxer.finish().ok);
  assert(text(out) === "hello world!", text(out));
  assert(text(err) === "warn", text(err));
});

Deno.test("demux gives the same result for every split point and byte-by-byte input", () => {
  const input = concat([frame(1, "abc"), frame(2, "de"), frame(1, "fghij"), frame(2, "")]);
  for (let split = 0; split <= input.length; split++) {
    const { out, err, demuxer } = collect();
    assert(demuxer.push(input.subarray(0, split)).ok);
    assert(demuxer.push(input.subarray(split)).ok);
    assert(demuxer.finish().ok);
    assert(text(out) === "abcfghij" && text(err) === "de", `split ${split}`);
  }
  const { out, err, demuxer } = collect();
  for (const byte of input) assert(demuxer.push(new Uint8Array([byte])).ok);
  assert(text(out) === "abcfghij" && text(err) === "de");
});

Deno.test("demux reports invalid stream types and stops", () => {
  const { out, demuxer } = collect();
  const result = demuxer.push(concat([frame(1, "ok"), frame(7, "bad"), frame(1, "later")]));
  assert(!result.ok && result.error.includes("invalid stream type 7"));
  assert(text(out) === "ok");
  const again: DemuxResult = demuxer.push(frame(1, "more"));
  assert(!again.ok);
  assert(text(out) === "ok");
});

Deno.test("demux turns an engine error frame (type 3) into an error carrying its message", () => {
  const { demuxer } = collect();
  const result = demuxer.push(frame(3, "OCI runtime exec failed: no such file\n"));
  assert(!result.ok && result.error.includes("OCI runtime exec failed"), JSON.stringify(result));
});

Deno.test("demux reports a stream that ends inside a header or a payload", () => {
  const inHeader = collect();
  assert(inHeader.demuxer.push(frame(1, "abc").subarray(0, 5)).ok);
  assert(!inHeader.demuxer.finish().ok);
  const inPayload = collect();
  assert(inPayload.demuxer.push(frame(1, "abcdef").subarray(0, 10)).ok);
  assert(text(inPayload.out) === "ab");
  assert(!inPayload.demuxer.finish().ok);
});

Deno.test("demux forwards a huge declared frame incrementally without buffering it", () => {
  const { out, demuxer } = collect();
  const header = new Uint8Array([1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
  assert(demuxer.push(header).ok);
  assert(demuxer.push(new Uint8Array(1000).fill(65)).ok);
  assert(concat(out).length === 1000);
  assert(!demuxer.finish().ok);
});

Deno.test("demux never throws on random and mutated input", () => {
  const next = prng(0x5eed);
  for (let round = 0; round < 2000; round++) {
    const { demuxer } = collect();
    const length = next() % 200;
    const input = new Uint8Array(length);
    for (let i = 0; i < length; i++) input[i] = next() & 0xff;
    if (round % 2 === 0) {
      // mostly valid framing with a few flipped bytes
      const valid = concat([frame(1, "x".repeat(next() % 40)), frame(2, "y".repeat(next() % 40))]);
      valid[next() % valid.length] ^= 1 << (next() % 8);
      input.set(valid.subarray(0, Math.min(valid.length, input.length)));
    }
    let offset = 0;
    while (offset < input.length) {
      const take = 1 + (next() % 17);
      const result = demuxer.push(input.subarray(offset, offset + take));
      assert(typeof result.ok === "boolean");
      offset += take;
    }
    assert(typeof demuxer.finish().ok === "boolean");
  }
});
