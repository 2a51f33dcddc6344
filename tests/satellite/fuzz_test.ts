// Hostile input into the satellite: random, truncated, oversized and mutated requests never
// crash or hang its dispatcher or its process; they end in a clear protocol error. Seeded; the
// seed is printed on failure. (The client's side: src/protocol/fuzz_test.ts.)

import { equal, ok } from "node:assert/strict";
import {
  createPackr,
  createUnpackr,
  decodeBody,
  Dispatcher,
  encodeFrame,
  FrameDecoder,
  Kind,
  MAX_FRAME_BYTES,
  OpenFlags,
} from "../../src/protocol/mod.ts";
import { SatelliteFs } from "../../satellite/fs.ts";
import { cString, Libc } from "../../satellite/libc.ts";
import { mutate, randomBytes, rng, SEED, withSeed } from "../../src/protocol/_test_utils.ts";
import { AT_FDCWD, O_CLOEXEC, O_PATH } from "../../src/linux/mod.ts";

const SATELLITE = new URL("../../satellite/main.ts", import.meta.url).pathname;

withSeed("satellite dispatcher: random and mutated requests never throw", async () => {
  const rand = rng(SEED + 1);
  const root = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dfsat-fuzz-" });
  Deno.writeTextFileSync(`${root}/file`, "content");
  Deno.mkdirSync(`${root}/dir`);
  const libc = new Libc();
  const rootFd = libc.fn.openat(AT_FDCWD, cString(root)!, O_PATH | O_CLOEXEC, 0);
  ok(rootFd >= 0);
  const fs = new SatelliteFs(libc, rootFd, { procFd: "/proc/self/fd" });
  const errors: string[] = [];
  const d = new Dispatcher(fs.handlers(), (m, e) => errors.push(`${m}: ${e}`));
  const packr = createPackr();
  const unpackr = createUnpackr();
  const valid = [
    [Kind.REQUEST, 1, "lstat", { path: "file" }],
    [Kind.REQUEST, 2, "open", { path: "file", flags: OpenFlags.O_RDWR }],
    [Kind.REQUEST, 3, "read", { handle: 1, offset: 0n, size: 100 }],
    [Kind.REQUEST, 4, "write", { handle: 1, offset: 3n, data: new Uint8Array([1, 2, 3]) }],
    [Kind.REQUEST, 5, "readdir", { handle: 2, offset: 0n, plus: true }],
    [Kind.REQUEST, 6, "opendir", { path: "dir" }],
    [Kind.REQUEST, 7, "mkdir", { path: "dir/x", mode: 0o755, owner: { uid: 1, gid: 1 } }],
    [Kind.REQUEST, 8, "rename", { from: "dir/x", to: "dir/y", flags: 0 }],
    [Kind.REQUEST, 9, "setxattr", {
      path: "file",
      name: "user.a",
      value: new Uint8Array(3),
      flags: 0,
    }],
    [Kind.REQUEST, 10, "utimens", { path: "file", mtime: { sec: 1, nsec: 2 } }],
  ].map((m) => encodeFrame(packr, m).slice(4));
  let fatal = 0, answered = 0;
  for (let i = 0; i < 6000; i++) {
    const body = i % 3 === 0
      ? randomBytes(rand, rand(64))
      : mutate(rand, valid[rand(valid.length)]);
    const r = d.handle(body);
    if (r instanceof Uint8Array) {
      answered++;
      const decoded = decodeBody(unpackr, r.subarray(4));
      ok(decoded.ok && (decoded.value[0] === Kind.RESULT || decoded.value[0] === Kind.ERROR));
    } else {
      fatal++;
      ok(r !== undefined && r.fatal.length > 0); // no I/O worker here: nothing answers later
    }
  }
  fs.closeAll();
  libc.fn.close(rootFd);
  await Deno.remove(root, { recursive: true });
  ok(fatal > 0 && answered > 0, `${fatal} fatal, ${answered} answered`);
  equal(errors.length, 0, errors.join("\n"));
});

async function rawSatellite(input: Uint8Array[]): Promise<{ code: number; frames: unknown[][] }> {
  const root = await Deno.makeTempDir({ prefix: "dfsat-raw-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", SATELLITE, "--root", root],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  for (const chunk of input) await writer.write(chunk).catch(() => {});
  await writer.close().catch(() => {});
  const out = new Uint8Array(await new Response(child.stdout).arrayBuffer());
  const { code } = await child.status;
  await Deno.remove(root, { recursive: true });
  const frames: unknown[][] = [];
  const unpackr = createUnpackr();
  new FrameDecoder().push(out, (b) => {
    const d = decodeBody(unpackr, b);
    if (d.ok) frames.push(d.value);
  });
  return { code, frames };
}

withSeed("satellite process: oversized, garbage, non-request and truncated input", async () => {
  const packr = createPackr();
  const oversized = new Uint8Array(8);
  new DataView(oversized.buffer).setUint32(0, MAX_FRAME_BYTES + 1);
  let r = await rawSatellite([oversized]);
  equal(r.code, 3);
  equal(r.frames[0][0], Kind.HELLO);
  equal(r.frames.at(-1)![0], Kind.FATAL);
  ok(String(r.frames.at(-1)![1]).includes("exceeds"));

  r = await rawSatellite([
    encodeFrame(packr, [Kind.REQUEST, 1, "lstat", { path: "" }]),
    new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
  ]);
  equal(r.code, 3);
  equal(r.frames[1][0], Kind.RESULT);
  equal(r.frames.at(-1)![0], Kind.FATAL);

  r = await rawSatellite([encodeFrame(packr, [1, 2, 3])]);
  equal(r.code, 3);
  equal(r.frames.at(-1)![0], Kind.FATAL);

  r = await rawSatellite([
    encodeFrame(packr, [Kind.REQUEST, 7, "bogus", {}]),
    encodeFrame(packr, [Kind.REQUEST, 8, "lstat", { path: 5 }]),
  ]);
  equal(r.code, 0);
  equal(r.frames[1][0], Kind.ERROR);
  equal(r.frames[1][2], "ENOSYS");
  equal(r.frames[2][2], "EINVAL");

  const frame = encodeFrame(packr, [Kind.REQUEST, 1, "lstat", { path: "" }]);
  r = await rawSatellite([frame.subarray(0, frame.length - 2)]); // truncated, then EOF
  equal(r.code, 0);
  equal(r.frames.length, 1); // only the handshake
});
