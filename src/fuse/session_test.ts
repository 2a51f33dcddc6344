// The session without a kernel: byte-fixture tests of request decoding and reply encoding,
// the reply invariant (exactly one reply per request) under swept and fuzzed input, and the
// no-xattrs shortcut, through a fake device.

import { deepStrictEqual, ok } from "node:assert/strict";
import { MemFs } from "../../tests/fuse/memfs.ts";
import {
  body,
  FakeDevice,
  frame,
  NO_REPLY,
  RecordingLogger,
  type Reply,
  rng,
} from "./_test_utils.ts";
import { IN_HEADER_SIZE, Opcode } from "./abi.ts";
import { ENOENT } from "./errno.ts";
import { Absent, type Entry, type FileSystem, type Node } from "./filesystem.ts";
import { Session, type SessionOptions } from "./session.ts";

function header(reply: Reply): { len: number; error: number; unique: bigint } {
  return { len: reply.len, error: reply.error, unique: reply.unique };
}

const INIT_BODY = body(
  [7, "u32"],
  [45, "u32"],
  [131072, "u32"],
  [0xffffffff, "u32"],
  [0, "u32"],
  new Uint8Array(44),
);

async function started(fs: FileSystem = new MemFs(), debug = false, options: SessionOptions = {}) {
  const device = new FakeDevice();
  const logger = new RecordingLogger();
  const traced = logger.traced;
  const session = new Session(fs, device, { ...options, logger, debug });
  session.start();
  device.send(frame({ opcode: 26, unique: 1n, body: INIT_BODY }));
  await session.ready;
  device.take();
  return { device, session, logger, traced };
}

/** Lets pending promise callbacks run. */
const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("fixture: INIT reply layout and negotiated values", async () => {
  const device = new FakeDevice();
  const session = new Session(new MemFs(), device, {});
  session.start();
  device.send(frame({ opcode: 26, unique: 7n, body: INIT_BODY }));
  await session.ready;
  const [r] = device.take();
  deepStrictEqual(header(r), { len: 80, error: 0, unique: 7n });
  const v = new DataView(r.bytes.buffer, 16);
  deepStrictEqual(
    {
      major: v.getUint32(0, true),
      minor: v.getUint32(4, true),
      readahead: v.getUint32(8, true),
      maxBackground: v.getUint16(16, true),
      congestion: v.getUint16(18, true),
      maxWrite: v.getUint32(20, true),
      timeGran: v.getUint32(24, true),
      maxPages: v.getUint16(28, true),
    },
    {
      major: 7,
      minor: 38,
      readahead: 131072,
      maxBackground: 64,
      congestion: 48,
      maxWrite: 1 << 20,
      timeGran: 1,
      maxPages: 256,
    },
  );
  const flags = v.getUint32(12, true);
  const want = (1 << 0) | (1 << 3) | (1 << 5) | (1 << 12) | (1 << 13) | (1 << 15) | (1 << 18) |
    (1 << 22);
  deepStrictEqual(flags >>> 0, want >>> 0, "flags");
  deepStrictEqual(flags & (1 << 14), 0, "READDIRPLUS_AUTO off: every batch with attributes");
  deepStrictEqual(flags & (1 << 4), 0, "EXPORT_SUPPORT off");
  deepStrictEqual(flags & (1 << 16), 0, "writeback cache off by default");
  device.end();
  await session.closed;
});

Deno.test("fixture: INIT from a newer major gets our version; too old a minor gets EPROTO", async () => {
  const device = new FakeDevice();
  const session = new Session(new MemFs(), device, { logger: new RecordingLogger() });
  session.start();
  device.send(
    frame({ opcode: 26, unique: 2n, body: body([8, "u32"], [0, "u32"], [0, "u32"], [0, "u32"]) }),
  );
  await settle();
  const [r] = device.take();
  deepStrictEqual(header(r), { len: 24, error: 0, unique: 2n });
  deepStrictEqual([
    new DataView(r.bytes.buffer).getUint32(16, true),
    new DataView(r.bytes.buffer).getUint32(20, true),
  ], [7, 38]);
  device.send(
    frame({ opcode: 26, unique: 3n, body: body([7, "u32"], [20, "u32"], [0, "u32"], [0, "u32"]) }),
  );
  await settle();
  deepStrictEqual(header(device.take()[0]).error, -71);
  let rejected = false;
  await session.ready.catch(() => rejected = true);
  ok(rejected, "ready rejects");
  device.end();
  await session.closed;
});

Deno.test("fixture: requests before INIT get EIO; unknown opcodes ENOSYS; bad length EINVAL", async () => {
  const device = new FakeDevice();
  const session = new Session(new MemFs(), device, { logger: new RecordingLogger() });
  session.start();
  device.send(frame({ opcode: 3, unique: 5n, body: new Uint8Array(16) }));
  deepStrictEqual(header(device.take()[0]), { len: 16, error: -5, unique: 5n });
  device.send(frame({ opcode: 26, unique: 6n, body: INIT_BODY }));
  await session.ready;
  device.take();
  device.send(frame({ opcode: 999, unique: 8n }));
  device.send(frame({ opcode: 40, unique: 9n, body: new Uint8Array(24) })); // POLL
  device.send(frame({ opcode: 31, unique: 10n, body: new Uint8Array(48) })); // GETLK
  deepStrictEqual(device.take().map((r) => header(r).error), [-38, -38, -38]);
  const f = frame({ opcode: 3, unique: 11n, body: new Uint8Array(16) });
  new DataView(f.buffer).setUint32(0, 4000, true);
  device.send(f);
  deepStrictEqual(header(device.take()[0]), { len: 16, error: -22, unique: 11n });
  device.send(new Uint8Array(10)); // shorter than a header: dropped
  deepStrictEqual(device.take().length, 0);
  device.end();
  await session.closed;
});

Deno.test("fixture: LOOKUP entry_out layout, then FORGET drops the node", async () => {
  const fs = new MemFs();
  const { device, session } = await started(fs);
  device.send(frame({ opcode: 9, unique: 20n, body: body([0o755, "u32"], [0o022, "u32"], "dir") }));
  device.send(frame({ opcode: 1, unique: 21n, body: body("dir") }));
  const [mk, lk] = device.take();
  deepStrictEqual(header(mk), { len: 144, error: 0, unique: 20n });
  const v = new DataView(lk.bytes.buffer, 16);
  const nodeId = v.getBigUint64(0, true);
  deepStrictEqual(nodeId, 2n);
  deepStrictEqual(v.getBigUint64(8, true), 0n, "generation");
  deepStrictEqual(v.getBigUint64(16, true), 1n, "entry_valid default 1 s");
  deepStrictEqual(v.getBigUint64(24, true), 1n, "attr_valid default 1 s");
  const attr = 40;
  deepStrictEqual(v.getBigUint64(attr, true), 2n, "ino");
  deepStrictEqual(v.getUint32(attr + 60, true), 0o040755, "mode");
  deepStrictEqual(v.getUint32(attr + 64, true), 2, "nlink");
  deepStrictEqual(v.getUint32(attr + 80, true), 4096, "blksize");
  ok(v.getBigUint64(attr + 32, true) > 1_600_000_000n, "mtime seconds");
  deepStrictEqual(session.nodes.get(2n)?.path, "/dir");
  // Two lookups counted (mkdir + lookup): forgetting one keeps the node, two drop it.
  device.send(frame({ opcode: 2, unique: 22n, nodeId: 2n, body: body([1, "u64"]) }));
  ok(session.nodes.get(2n) !== undefined, "still known after 1 of 2 forgets");
  device.send(
    frame({ opcode: 42, unique: 23n, body: body([1, "u32"], [0, "u32"], [2, "u64"], [1, "u64"]) }),
  );
  deepStrictEqual(session.nodes.get(2n), undefined);
  deepStrictEqual(fs.forgotten, 1);
  deepStrictEqual(device.take().length, 0, "FORGET and BATCH_FORGET get no reply");
  device.send(frame({ opcode: 1, unique: 24n, body: body("missing") }));
  deepStrictEqual(header(device.take()[0]), { len: 16, error: -2, unique: 24n });
  device.end();
  await session.closed;
});

Deno.test("fixture: LOOKUP's ENOENT is a negative entry for the mount's timeout, or an Absent's own", async () => {
  const fs: FileSystem = {
    lookup: (_ctx, _parent, name) => name === "long" ? new Absent(60) : ENOENT,
  };
  const { device, session } = await started(fs, false, { negativeTimeout: 2 });
  device.send(frame({ opcode: 1, unique: 30n, body: body("short") }));
  device.send(frame({ opcode: 1, unique: 31n, body: body("long") }));
  await settle();
  const [short, long] = device.take();
  for (const [r, valid] of [[short, 2n], [long, 60n]] as const) {
    deepStrictEqual(header(r), { len: 16 + 128, error: 0, unique: r.unique });
    const v = new DataView(r.bytes.buffer, 16);
    deepStrictEqual(v.getBigUint64(0, true), 0n, "node id 0: a negative entry");
    deepStrictEqual(v.getBigUint64(16, true), valid, "entry_valid");
  }
  device.end();
  await session.closed;
  // Without a negative timeout, a plain ENOENT is an error reply.
  const plain = await started(fs);
  plain.device.send(frame({ opcode: 1, unique: 32n, body: body("short") }));
  await settle();
  deepStrictEqual(header(plain.device.take()[0]), { len: 16, error: -2, unique: 32n });
  plain.device.end();
  await plain.session.closed;
});

Deno.test("fixture: the filesystem hears of each entry told to the kernel, as its node", async () => {
  const told: [string | undefined, bigint][] = [];
  const fs = new MemFs();
  (fs as FileSystem).entered = (node: Node, entry: Entry) => told.push([node.path, entry.attr.ino]);
  const { device, session } = await started(fs);
  for (const [i, n] of ["a", "bbbbbbbbb"].entries()) {
    device.send(
      frame({ opcode: 9, unique: BigInt(60 + i), body: body([0o755, "u32"], [0, "u32"], n) }),
    );
  }
  device.send(frame({ opcode: 1, unique: 62n, body: body("a") }));
  deepStrictEqual(told.map(([p]) => p), ["/a", "/bbbbbbbbb", "/a"], "MKDIR, MKDIR, LOOKUP");
  deepStrictEqual(told[0][1], told[2][1]);
  device.send(frame({ opcode: 27, unique: 63n, body: body([0, "u32"], [0, "u32"]) }));
  const fh = new DataView(device.take()[3].bytes.buffer).getBigUint64(16, true);
  told.length = 0;
  // Room for ".", ".." and "a" (160 bytes each), not for "bbbbbbbbb" (168).
  device.send(
    frame({
      opcode: Opcode.READDIRPLUS,
      unique: 64n,
      body: body(
        [Number(fh), "u64"],
        [0, "u64"],
        [500, "u32"],
        [0, "u32"],
        [0, "u64"],
        [0, "u32"],
        [0, "u32"],
      ),
    }),
  );
  deepStrictEqual(header(device.take()[0]).len, 16 + 480);
  deepStrictEqual(told.map(([p]) => p), ["/a"], "only the entry the answer holds");
  device.end();
  await session.closed;
});

Deno.test("fixture: names: invalid UTF-8 EILSEQ, unterminated EINVAL, too long ENAMETOOLONG", async () => {
  const { device, session } = await started();
  device.send(frame({ opcode: 1, unique: 30n, body: new Uint8Array([0x61, 0xff, 0]) }));
  device.send(frame({ opcode: 1, unique: 31n, body: new Uint8Array([0x61, 0x62]) }));
  device.send(frame({ opcode: 1, unique: 32n, body: body("x".repeat(256)) }));
  device.send(frame({ opcode: 1, unique: 33n, body: body("..") }));
  deepStrictEqual(device.take().map((r) => header(r).error), [-84, -22, -36, -22]);
  device.end();
  await session.closed;
});

Deno.test("fixture: GETXATTR size probe, ERANGE and value; LISTXATTR encoding", async () => {
  const { device, session } = await started();
  device.send(
    frame({
      opcode: 21,
      unique: 40n,
      body: body([5, "u32"], [0, "u32"], "user.k", new TextEncoder().encode("value")),
    }),
  );
  device.send(frame({ opcode: 22, unique: 41n, body: body([0, "u32"], [0, "u32"], "user.k") }));
  device.send(frame({ opcode: 22, unique: 42n, body: body([3, "u32"], [0, "u32"], "user.k") }));
  device.send(frame({ opcode: 22, unique: 43n, body: body([64, "u32"], [0, "u32"], "user.k") }));
  device.send(frame({ opcode: 23, unique: 44n, body: body([64, "u32"], [0, "u32"]) }));
  const [set, probe, small, full, list] = device.take();
  deepStrictEqual(header(set).error, 0);
  deepStrictEqual([header(probe).len, new DataView(probe.bytes.buffer).getUint32(16, true)], [
    24,
    5,
  ]);
  deepStrictEqual(header(small).error, -34);
  deepStrictEqual(new TextDecoder().decode(full.bytes.subarray(16)), "value");
  deepStrictEqual(new TextDecoder().decode(list.bytes.subarray(16)), "user.k\0");
  device.end();
  await session.closed;
});

Deno.test("fixture: READDIR packs aligned dirents with next offsets", async () => {
  const { device, session } = await started();
  for (const [i, n] of ["a", "bbbbbbbbb"].entries()) {
    device.send(
      frame({ opcode: 9, unique: BigInt(50 + i), body: body([0o755, "u32"], [0, "u32"], n) }),
    );
  }
  device.send(frame({ opcode: 27, unique: 52n, body: body([0, "u32"], [0, "u32"]) }));
  const fh = new DataView(device.take()[2].bytes.buffer).getBigUint64(16, true);
  device.send(
    frame({
      opcode: 28,
      unique: 53n,
      body: body(
        [Number(fh), "u64"],
        [0, "u64"],
        [4096, "u32"],
        [0, "u32"],
        [0, "u64"],
        [0, "u32"],
        [0, "u32"],
      ),
    }),
  );
  const [{ bytes: r }] = device.take();
  const v = new DataView(r.buffer);
  const entries: [string, number, number][] = [];
  for (let at = 16; at < r.length;) {
    const namelen = v.getUint32(at + 16, true);
    entries.push([
      new TextDecoder().decode(r.subarray(at + 24, at + 24 + namelen)),
      Number(v.getBigUint64(at + 8, true)),
      v.getUint32(at + 20, true),
    ]);
    at += (24 + namelen + 7) & ~7;
  }
  deepStrictEqual(entries, [[".", 1, 4], ["..", 2, 4], ["a", 3, 4], ["bbbbbbbbb", 4, 4]]);
  deepStrictEqual(r.length, 16 + 32 + 32 + 32 + 40);
  device.end();
  await session.closed;
});

Deno.test("fixture: INTERRUPT aborts the request's signal; handler errors become EIO", async () => {
  let seen: AbortSignal | undefined;
  const fs: FileSystem = {
    getattr: (ctx) =>
      new Promise((resolve) => {
        seen = ctx.signal;
        ctx.signal.addEventListener("abort", () => resolve(ENOENT));
      }),
    statfs: () => {
      throw new Error("boom");
    },
  };
  const { device, session, logger } = await started(fs);
  device.send(frame({ opcode: 3, unique: 60n, body: new Uint8Array(16) }));
  await settle();
  deepStrictEqual(session.inFlight, 1);
  device.send(frame({ opcode: 36, unique: 61n, body: body([60, "u64"]) }));
  await settle();
  ok(seen?.aborted, "signal aborted");
  device.send(frame({ opcode: 36, unique: 62n, body: body([12345, "u64"]) }));
  device.send(frame({ opcode: 17, unique: 63n }));
  const errors = device.take().map((r) => [header(r).unique, header(r).error]);
  deepStrictEqual(errors, [[60n, -2], [62n, -11], [63n, -5]].map(([u, e]) => [u, e]));
  ok(logger.lines.some((l) => l.includes("boom")), "the exception is logged");
  device.end();
  await session.closed;
});

Deno.test("watchdog: a request unanswered past stuckAfterMs is logged once, with the device's view", async () => {
  let release = (): void => {};
  const fs: FileSystem = {
    getattr: () => new Promise((resolve) => release = () => resolve(ENOENT)),
  };
  const { device, session, logger } = await started(fs, false, { stuckAfterMs: 20 });
  device.describe = () => "fake device view";
  device.send(frame({ opcode: 3, unique: 70n, nodeId: 1n, body: new Uint8Array(16) }));
  // Waits for the line (timers may run late on a loaded machine), then a few more rounds.
  for (let i = 0; i < 500 && !logger.lines.some((l) => l.includes("unanswered")); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 100));
  const warned = logger.lines.filter((l) => l.startsWith("warn "));
  deepStrictEqual(warned, [
    "warn FUSE GETATTR (request 70, node 1, pid 1) unanswered for over 0.02 s",
    "warn FUSE device: fake device view",
  ]);
  release();
  await settle();
  device.end();
  await session.closed;
});

Deno.test("fixture: the debug trace has one rx and one tx line per request", async () => {
  const { device, session, traced } = await started(new MemFs(), true);
  traced.length = 0;
  device.send(frame({ opcode: 1, unique: 70n, body: body("nope") }));
  device.send(frame({ opcode: 3, unique: 71n, body: new Uint8Array(16) }));
  deepStrictEqual(traced.filter((l) => l.startsWith("rx 70 LOOKUP")).length, 1);
  deepStrictEqual(traced.filter((l) => l.startsWith("tx 70 ENOENT")).length, 1);
  deepStrictEqual(traced.filter((l) => l.startsWith("rx 71 GETATTR")).length, 1);
  deepStrictEqual(traced.filter((l) => l.startsWith("tx 71 OK")).length, 1);
  device.end();
  await session.closed;
});

Deno.test("fuzz: random and mutated frames never escape the decoder", async () => {
  const seed = Number(Deno.env.get("FUSE_FUZZ_SEED") ?? 12345);
  const random = rng(seed);
  const { device, session, logger } = await started();
  // Seed corpus: valid frames of many opcodes.
  const corpus: Uint8Array[] = [
    frame({ opcode: 1, body: body("a") }),
    frame({ opcode: 9, body: body([0o755, "u32"], [0, "u32"], "d") }),
    frame({ opcode: 35, body: body([0o102, "u32"], [0o644, "u32"], [0, "u32"], [0, "u32"], "f") }),
    frame({
      opcode: 16,
      nodeId: 2n,
      body: body(
        [1, "u64"],
        [0, "u64"],
        [3, "u32"],
        [0, "u32"],
        [0, "u64"],
        [0, "u32"],
        [0, "u32"],
        new Uint8Array([1, 2, 3]),
      ),
    }),
    frame({
      opcode: 15,
      nodeId: 2n,
      body: body([1, "u64"], [0, "u64"], [4096, "u32"], [0, "u32"], [0, "u64"], [0, "u32"], [
        0,
        "u32",
      ]),
    }),
    frame({ opcode: 4, body: new Uint8Array(88) }),
    frame({ opcode: 45, body: body([1, "u64"], [1, "u32"], [0, "u32"], "a", "b") }),
    frame({ opcode: 21, body: body([1, "u32"], [0, "u32"], "user.x", new Uint8Array([9])) }),
    frame({
      opcode: 42,
      body: body([2, "u32"], [0, "u32"], [2, "u64"], [1, "u64"], [3, "u64"], [1, "u64"]),
    }),
    frame({
      opcode: 44,
      body: body([0, "u64"], [0, "u64"], [4096, "u32"], [0, "u32"], [0, "u64"], [0, "u32"], [
        0,
        "u32",
      ]),
    }),
    frame({ opcode: 47, body: new Uint8Array(56) }),
    frame({ opcode: 46, body: new Uint8Array(24) }),
    frame({ opcode: 43, body: new Uint8Array(32) }),
    frame({ opcode: 36, body: body([5, "u64"]) }),
    frame({ opcode: 6, body: body("s", "target") }),
    frame({ opcode: 13, body: body([2, "u64"], "hard") }),
  ];
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 5000; i++) {
    let f: Uint8Array;
    const kind = random();
    if (kind < 0.2) {
      // Pure noise, with a plausible header length half of the time.
      f = new Uint8Array(Math.floor(random() * 200));
      for (let j = 0; j < f.length; j++) f[j] = random() * 256;
      if (f.length >= 8 && random() < 0.5) {
        new DataView(f.buffer).setUint32(0, f.length, true);
        new DataView(f.buffer).setUint32(4, Math.floor(random() * 60), true);
      }
    } else {
      f = corpus[Math.floor(random() * corpus.length)].slice();
      const flips = 1 + Math.floor(random() * 6);
      for (let j = 0; j < flips; j++) {
        const at = 16 + Math.floor(random() * Math.max(1, f.length - 16));
        if (at < f.length) f[at] = random() * 256;
      }
      if (random() < 0.3) {
        // Truncate, keeping the header's length consistent (the kernel's guarantee) or not.
        const cut = Math.floor(random() * f.length);
        f = f.slice(0, Math.max(cut, 0));
        if (f.length >= 4 && random() < 0.8) new DataView(f.buffer).setUint32(0, f.length, true);
      }
      if (f.length >= 24 && random() < 0.3) {
        new DataView(f.buffer).setBigUint64(16, BigInt(Math.floor(random() * 8)), true);
      }
    }
    // Distinct ids, so replies can be matched to requests.
    if (f.length >= 16) new DataView(f.buffer).setBigUint64(8, BigInt(1000 + i), true);
    device.send(f); // must not throw
    sent.push(f);
  }
  await settle();
  await settle();
  const replies = device.take();
  for (const r of replies) {
    deepStrictEqual(r.len, r.bytes.length, `seed ${seed}: reply length field`);
    ok(r.error <= 0 && r.error > -4096, `seed ${seed}: error range ${r.error}`);
  }
  assertOneReplyEach(sent, replies, `seed ${seed}`);
  ok(
    !logger.lines.some((l) => l.includes("internal error")),
    `seed ${seed}: no internal errors`,
  );
  deepStrictEqual(session.inFlight, 0, `seed ${seed}: nothing left in flight`);
  device.end();
  await session.closed;
});

/**
 * The reply invariant over `sent` frames (distinct unique ids): a frame shorter than a header
 * is dropped; a length mismatch gets one EINVAL; FORGET, BATCH_FORGET and NOTIFY_REPLY get
 * none; INTERRUPT at most one; every other request exactly one. No reply names another id.
 */
function assertOneReplyEach(sent: Uint8Array[], replies: Reply[], label: string): void {
  const counts = new Map<bigint, number>();
  for (const r of replies) counts.set(r.unique, (counts.get(r.unique) ?? 0) + 1);
  const expected = new Set<bigint>();
  for (const f of sent) {
    if (f.length < IN_HEADER_SIZE) continue;
    const v = new DataView(f.buffer, f.byteOffset, f.length);
    const opcode = v.getUint32(4, true), unique = v.getBigUint64(8, true);
    expected.add(unique);
    const n = counts.get(unique) ?? 0;
    const what = `${label}: request ${unique} (opcode ${opcode}, ${f.length} bytes)`;
    if (v.getUint32(0, true) !== f.length) deepStrictEqual(n, 1, `${what}: replies`);
    else if (NO_REPLY.has(opcode)) deepStrictEqual(n, 0, `${what}: replies`);
    else if (opcode === Opcode.INTERRUPT) ok(n <= 1, `${what}: ${n} replies`);
    else deepStrictEqual(n, 1, `${what}: replies`);
  }
  for (const unique of counts.keys()) ok(expected.has(unique), `${label}: reply to ${unique}`);
}

Deno.test("sweep: every opcode at every short length gets exactly one reply (none for FORGET...)", async () => {
  const fs = new MemFs({ rootMode: 0o777 });
  const { device, session, logger } = await started(fs);
  const fills: ((i: number, n: number) => number)[] = [
    () => 0,
    () => 0xff,
    (i, n) => i === n - 1 ? 0 : 0x61, // "aaa…\0": a name filling the body
    (i) => i % 9 === 8 ? 0 : 0x62 + (i % 3), // short names at several places
  ];
  const sent: Uint8Array[] = [];
  let unique = 100n;
  for (let opcode = 0; opcode <= 52; opcode++) {
    if (opcode === Opcode.INIT || opcode === Opcode.DESTROY) continue; // session-wide effects
    for (const fill of fills) {
      for (let n = 0; n <= 100; n++) {
        const b = new Uint8Array(n);
        for (let i = 0; i < n; i++) b[i] = fill(i, n);
        const f = frame({ opcode, unique: unique++, body: b });
        device.send(f);
        sent.push(f);
      }
    }
  }
  await settle();
  assertOneReplyEach(sent, device.take(), "sweep");
  ok(!logger.lines.some((l) => l.includes("internal error")), logger.lines.join("\n"));
  deepStrictEqual(session.inFlight, 0);
  device.end();
  await session.closed;
});

Deno.test("reply invariant: async answers, INTERRUPT of a pending request, DESTROY", async () => {
  const pending: (() => void)[] = [];
  const later = <T>(value: T): Promise<T> =>
    new Promise((resolve) => pending.push(() => resolve(value)));
  const mem = new MemFs();
  const fs: FileSystem = {
    lookup: (ctx, parent, name) => later(mem.lookup(ctx, parent, name)),
    getattr: (ctx, node, h) =>
      new Promise((resolve) => {
        ctx.signal.addEventListener("abort", () => resolve(ENOENT));
        pending.push(() => resolve(mem.getattr(ctx, node, h as undefined)));
      }),
    statfs: () => later(mem.statfs()),
  };
  const { device, session } = await started(fs);
  const sent = [
    frame({ opcode: Opcode.LOOKUP, unique: 10n, body: body("x") }),
    frame({ opcode: Opcode.GETATTR, unique: 11n, body: new Uint8Array(16) }),
    frame({ opcode: Opcode.STATFS, unique: 12n }),
    frame({ opcode: Opcode.INTERRUPT, unique: 13n, body: body([11, "u64"]) }),
    frame({ opcode: Opcode.GETATTR, unique: 14n, body: new Uint8Array(16) }),
    frame({ opcode: Opcode.DESTROY, unique: 15n }),
  ];
  for (const f of sent) device.send(f);
  await settle();
  deepStrictEqual(session.inFlight, 3, "LOOKUP, STATFS and the second GETATTR are pending");
  for (const resolve of pending.splice(0)) resolve();
  await settle();
  const replies = device.take();
  assertOneReplyEach(sent, replies, "async");
  deepStrictEqual(replies.find((r) => r.unique === 11n)?.error, -2, "interrupted GETATTR");
  deepStrictEqual(replies.find((r) => r.unique === 13n), undefined, "INTERRUPT found its target");
  deepStrictEqual(session.inFlight, 0);
  device.end();
  await session.closed;
});

Deno.test("fixture: a node's path follows rename and unlink (layer view)", async () => {
  const { device, session } = await started();
  const mk = (u: bigint, parent: bigint, name: string) =>
    device.send(
      frame({ opcode: 9, unique: u, nodeId: parent, body: body([0o755, "u32"], [0, "u32"], name) }),
    );
  mk(80n, 1n, "a");
  mk(81n, 2n, "b");
  device.send(
    frame({
      opcode: 35,
      unique: 82n,
      nodeId: 3n,
      body: body([0o101, "u32"], [0o100644, "u32"], [0, "u32"], [0, "u32"], "f"),
    }),
  );
  device.take();
  const f: Node = session.nodes.get(4n)!;
  deepStrictEqual(f.path, "/a/b/f");
  device.send(frame({ opcode: 12, unique: 83n, nodeId: 1n, body: body([1, "u64"], "a", "z") }));
  deepStrictEqual(header(device.take()[0]).error, 0);
  deepStrictEqual(f.path, "/z/b/f");
  device.send(frame({ opcode: 13, unique: 84n, nodeId: 1n, body: body([4, "u64"], "hard") }));
  device.send(frame({ opcode: 10, unique: 85n, nodeId: 3n, body: body("f") }));
  device.take();
  deepStrictEqual(f.path, "/hard");
  device.send(frame({ opcode: 10, unique: 86n, nodeId: 1n, body: body("hard") }));
  device.take();
  deepStrictEqual(f.path, undefined);
  device.end();
  await session.closed;
});
