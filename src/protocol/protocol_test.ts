// Pure protocol pieces: errno table, open flag numbering, device numbers, schemas.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import {
  changesNames,
  createPackr,
  createUnpackr,
  decodeBody,
  decodeDev,
  encodeDev,
  encodeFrame,
  encodeRequest,
  errnoName,
  errnoNumber,
  firstFrameLength,
  INVALID,
  isQuery,
  Kind,
  LARGE_PAYLOAD_BYTES,
  MAX_FRAME_BYTES,
  MAX_PATH_BYTES,
  type MethodName,
  METHODS,
  OpenFlags,
  openFlagsFromWire,
  openFlagsToWire,
  RpcFailure,
} from "./mod.ts";
import { DecodedRequest, Dispatcher, type Handlers, Later } from "./server.ts";

Deno.test("errno names map to Linux numbers and back", () => {
  equal(errnoNumber("ENOENT"), 2);
  equal(errnoNumber("ENOTEMPTY"), 39);
  equal(errnoNumber("ELOOP"), 40);
  equal(errnoNumber("EOPNOTSUPP"), 95);
  equal(errnoNumber("ENOT_A_NAME"), 5);
  equal(errnoName(13), "EACCES");
  equal(errnoName(61), "ENODATA");
  equal(errnoName(9999), "EIO");
});

Deno.test("open flags: aarch64's differing bits are translated both ways", () => {
  const arm = 0o40000 | 0o100000 | 0o2 | 0o2000; // O_DIRECTORY|O_NOFOLLOW|O_RDWR|O_APPEND on arm64
  const wire = openFlagsToWire(arm, "aarch64");
  equal(wire, OpenFlags.O_DIRECTORY | OpenFlags.O_NOFOLLOW | OpenFlags.O_RDWR | OpenFlags.O_APPEND);
  equal(openFlagsFromWire(wire, "aarch64"), arm);
  equal(openFlagsFromWire(wire, "x86_64"), wire);
  equal(
    openFlagsToWire(OpenFlags.O_SYNC | OpenFlags.O_TRUNC, "x86_64"),
    OpenFlags.O_SYNC | OpenFlags.O_TRUNC,
  );
  equal(openFlagsFromWire(OpenFlags.O_DIRECT, "aarch64"), 0o200000);
});

Deno.test("device numbers use Linux's 32-bit encoding", () => {
  equal(encodeDev(1, 3), 0x103);
  deepStrictEqual(decodeDev(encodeDev(259, 70000)), { major: 259, minor: 70000 });
  deepStrictEqual(decodeDev(encodeDev(4095, 0xfffff)), { major: 4095, minor: 0xfffff });
});

Deno.test("schemas validate, normalise and drop unknown keys", () => {
  const p = METHODS.read.params;
  deepStrictEqual(p.parse({ handle: 1, offset: 5, size: 10, extra: "x" }), {
    handle: 1,
    offset: 5n,
    size: 10,
  });
  deepStrictEqual(p.parse({ handle: 1, offset: (1n << 64n) - 1n, size: 10 }), {
    handle: 1,
    offset: (1n << 64n) - 1n,
    size: 10,
  });
  equal(p.parse({ handle: 1, offset: 1n << 64n, size: 10 }), INVALID);
  equal(p.parse({ handle: -1, offset: 0n, size: 10 }), INVALID);
  equal(p.parse({ handle: 1, offset: 0.5, size: 10 }), INVALID);
  equal(p.parse([1, 0n, 10]), INVALID);
  equal(p.parse(null), INVALID);
  deepStrictEqual(METHODS.create.params.parse({ path: "a", flags: 0, mode: 0o644, owner: null }), {
    path: "a",
    flags: 0,
    mode: 0o644,
  });
  // paths may pass PATH_MAX (the satellite resolves them in runs), up to MAX_PATH_BYTES
  deepStrictEqual(METHODS.lstat.params.parse({ path: "a/".repeat(4000) + "b" }), {
    path: "a/".repeat(4000) + "b",
  });
  equal(METHODS.lstat.params.parse({ path: new Uint8Array(MAX_PATH_BYTES + 1) }), INVALID);
  equal(METHODS.lstat.params.parse({ path: "a".repeat(MAX_PATH_BYTES + 1) }), INVALID);
  equal(METHODS.lstat.params.parse({ path: new Uint8Array(MAX_PATH_BYTES) }).constructor, Object);
  equal(METHODS.write.params.parse({ handle: 1, offset: 0n, data: [1, 2, 3] }), INVALID);
});

Deno.test("requests with a large payload encode to msgpackr's own bytes, and decode back", () => {
  const packr = createPackr();
  const unpackr = createUnpackr();
  const payload = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i * 7);
  // msgpackr may hand out a Buffer: compare bytes.
  const same = (a: Uint8Array, b: Uint8Array, what: string): void =>
    deepStrictEqual(new Uint8Array(a), new Uint8Array(b), what);
  for (const n of [0, 100, LARGE_PAYLOAD_BYTES - 1, LARGE_PAYLOAD_BYTES, 1 << 20]) {
    const params = { handle: 3, offset: 1n << 40n, data: payload(n) };
    const direct = encodeRequest(packr, 9, "write", params);
    const reference = encodeFrame(createPackr(), [Kind.REQUEST, 9, "write", params]);
    same(direct, reference, `${n} bytes`);
    const decoded = decodeBody(unpackr, direct.subarray(4));
    ok(decoded.ok);
    deepStrictEqual(decoded.value, [Kind.REQUEST, 9, "write", params]);
  }
  // Payload not last, or no params at all: the plain encoding.
  const mid = { data: payload(LARGE_PAYLOAD_BYTES), handle: 1 };
  same(
    encodeRequest(packr, 1, "write", mid),
    encodeFrame(createPackr(), [Kind.REQUEST, 1, "write", mid]),
    "payload first",
  );
  same(
    encodeRequest(packr, 2, "statfs", undefined),
    encodeFrame(createPackr(), [Kind.REQUEST, 2, "statfs", undefined]),
    "no params",
  );
});

Deno.test("a rename between two longest paths, 3 UTF-8 bytes per unit, fits one frame", () => {
  const longest = "\u20ac".repeat(MAX_PATH_BYTES); // € : 3 bytes in UTF-8
  const frame = encodeRequest(createPackr(), 1, "rename", { from: longest, to: longest, flags: 0 });
  ok(frame.length - 4 <= MAX_FRAME_BYTES, `${frame.length} bytes`);
});

Deno.test("dispatcher: a Later answer goes to onLate once settled, with the request's id", () => {
  const late: Uint8Array[] = [];
  let settle: ((n: null) => void) | undefined;
  const d = new Dispatcher(
    {
      fsync: () => {
        const later = new Later<null>();
        settle = (v) => later.settle(v);
        return later;
      },
      flush: () => {
        const later = new Later<null>();
        later.settle(new RpcFailure("EIO", "settled at once"));
        return later;
      },
    } as unknown as Handlers,
    undefined,
    (f) => late.push(f.slice()),
  );
  const packr = createPackr();
  const unpackr = createUnpackr();
  const body = (id: number, method: string) =>
    encodeRequest(packr, id, method, { handle: 1, datasync: false }).subarray(4);
  equal(d.handle(body(7, "fsync")), undefined);
  equal(late.length, 0);
  equal(d.handle(body(8, "flush")), undefined);
  settle!(null);
  settle!(null); // only the first settle counts
  const messages = late.map((f) => decodeBody(unpackr, f.subarray(4)));
  deepStrictEqual(messages.map((m) => m.ok && m.value.slice(0, 3)), [
    [Kind.ERROR, 8, "EIO"],
    [Kind.RESULT, 7, null],
  ]);
});

Deno.test("dispatcher: with reuseFrames each answer is made where the one before was", () => {
  const packr = createPackr();
  const unpackr = createUnpackr();
  const data = new Uint8Array(60 * 1024).fill(7);
  const handlers = { readlink: () => "x", getxattr: () => data } as unknown as Handlers;
  // Copied: msgpackr makes every frame in one buffer shared by all its encoders.
  const bodies = [1, 2, 3, 4].map((id) =>
    (id % 2
      ? encodeRequest(packr, id, "getxattr", { path: "f", name: "user.a" })
      : encodeRequest(packr, id, "readlink", { path: "l" })).subarray(4).slice()
  );
  for (const reuseFrames of [false, true]) {
    const d = new Dispatcher(handlers, undefined, undefined, { reuseFrames });
    const frames: Uint8Array[] = [];
    for (const [i, body] of bodies.entries()) {
      const frame = d.handle(body);
      ok(frame instanceof Uint8Array, Deno.inspect(frame));
      const decoded = decodeBody(unpackr, frame.slice().subarray(4));
      ok(decoded.ok && decoded.value[0] === Kind.RESULT && decoded.value[1] === i + 1);
      frames.push(frame);
    }
    const offsets = frames.map((f) => f.byteOffset);
    if (reuseFrames) {
      ok(frames.every((f) => f.buffer === frames[0].buffer), "one buffer for every answer");
      equal(new Set(offsets).size, 1, `all at one place: ${offsets}`);
    } else {
      ok(offsets[1] > offsets[0], `each after the one before: ${offsets}`);
    }
  }
});

Deno.test("firstFrameLength: a whole frame's length, nothing while partial, 0 for an impossible header", () => {
  const frame = encodeFrame(createPackr(), [Kind.FATAL, "x"]);
  const total = frame.length;
  deepStrictEqual(firstFrameLength(frame.subarray(0, 3)), undefined);
  deepStrictEqual(firstFrameLength(frame.subarray(0, total - 1)), undefined);
  deepStrictEqual(firstFrameLength(frame), total);
  deepStrictEqual(firstFrameLength(new Uint8Array([...frame, ...frame])), total);
  deepStrictEqual(firstFrameLength(new Uint8Array(4)), 0);
  deepStrictEqual(firstFrameLength(new Uint8Array([0xff, 0xff, 0xff, 0xff, 1])), 0);
});

Deno.test("dispatcher: a walk answered without its handler; which calls change names", () => {
  let ran = 0;
  const d = new Dispatcher({ walk: () => (ran++, { dirs: [], walked: 9 }) } as unknown as Handlers);
  const packr = createPackr();
  const unpackr = createUnpackr();
  const body = encodeRequest(packr, 5, "walk", { paths: ["a"], maxEntries: 1, maxBytes: 1 })
    .subarray(4);
  const request = d.decode(body);
  ok(request instanceof DecodedRequest && request.method === "walk");
  const frame = d.answer(request as DecodedRequest & { method: "walk" }, {
    dirs: [],
    walked: 0,
  });
  const decoded = decodeBody(unpackr, frame.subarray(4));
  deepStrictEqual(decoded.ok && decoded.value, [Kind.RESULT, 5, { dirs: [], walked: 0 }]);
  equal(ran, 0, "the handler did not run");
  // The changes after which the client keeps no walk answer (it drops what walks brought).
  const renaming = Object.keys(METHODS).filter((m) => changesNames(m as MethodName)).sort();
  deepStrictEqual(renaming, [
    "create",
    "link",
    "mkdir",
    "mknod",
    "rename",
    "rmdir",
    "symlink",
    "unlink",
  ]);
  ok(renaming.every((m) => !isQuery(m as MethodName, {})), "none is a query");
});
