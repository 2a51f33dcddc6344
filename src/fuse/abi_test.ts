// The ABI module: decoders are total (short or hostile input gives an errno, never a throw)
// and read the right offsets; encoders write 64-bit fields exactly without BigInt.

import { ERRNO } from "../linux/mod.ts";
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { body, rng } from "./_test_utils.ts";
import * as abi from "./abi.ts";
import {
  ACCESS_IN_SIZE,
  COPY_FILE_RANGE_IN_SIZE,
  CREATE_IN_SIZE,
  decodeAccessIn,
  decodeBatchForgetIn,
  decodeCopyFileRangeIn,
  decodeCreateIn,
  decodeFallocateIn,
  decodeFlushIn,
  decodeForgetIn,
  decodeFsyncIn,
  decodeGetattrIn,
  decodeGetxattrIn,
  decodeInHeader,
  decodeInitIn,
  decodeInterruptIn,
  decodeLinkIn,
  decodeLseekIn,
  decodeMkdirIn,
  decodeMknodIn,
  decodeOpenIn,
  type Decoder,
  decodeReadIn,
  decodeReleaseIn,
  decodeRename2In,
  decodeRenameIn,
  decodeSetattrIn,
  decodeSetxattrIn,
  decodeWriteIn,
  encodeAttr,
  encodeName,
  encodeTimeout,
  FALLOCATE_IN_SIZE,
  FATTR_SIZE,
  FLUSH_IN_SIZE,
  forgetOneCount,
  forgetOneNodeId,
  FSYNC_IN_SIZE,
  GETATTR_IN_SIZE,
  GETXATTR_IN_SIZE,
  type InHeader,
  INIT_IN_MIN_SIZE,
  InitFlag,
  LINK_IN_SIZE,
  LSEEK_IN_SIZE,
  MKDIR_IN_SIZE,
  MKNOD_IN_SIZE,
  opcodeName,
  OPEN_IN_SIZE,
  READ_IN_MIN_SIZE,
  RELEASE_IN_MIN_SIZE,
  RENAME2_IN_SIZE,
  RENAME_IN_SIZE,
  SETATTR_IN_SIZE,
  SETXATTR_IN_SIZE,
  WRITE_IN_SIZE,
} from "./abi.ts";

const DECODERS: [string, Decoder<unknown>, number][] = [
  ["init", decodeInitIn, INIT_IN_MIN_SIZE],
  ["getattr", decodeGetattrIn, GETATTR_IN_SIZE],
  ["setattr", decodeSetattrIn, SETATTR_IN_SIZE],
  ["mknod", decodeMknodIn, MKNOD_IN_SIZE],
  ["mkdir", decodeMkdirIn, MKDIR_IN_SIZE],
  ["rename", decodeRenameIn, RENAME_IN_SIZE],
  ["rename2", decodeRename2In, RENAME2_IN_SIZE],
  ["link", decodeLinkIn, LINK_IN_SIZE],
  ["open", decodeOpenIn, OPEN_IN_SIZE],
  ["create", decodeCreateIn, CREATE_IN_SIZE],
  ["read", decodeReadIn, READ_IN_MIN_SIZE],
  ["write", decodeWriteIn, WRITE_IN_SIZE],
  ["release", decodeReleaseIn, RELEASE_IN_MIN_SIZE],
  ["flush", decodeFlushIn, FLUSH_IN_SIZE],
  ["fsync", decodeFsyncIn, FSYNC_IN_SIZE],
  ["setxattr", decodeSetxattrIn, SETXATTR_IN_SIZE],
  ["getxattr", decodeGetxattrIn, GETXATTR_IN_SIZE],
  ["access", decodeAccessIn, ACCESS_IN_SIZE],
  ["fallocate", decodeFallocateIn, FALLOCATE_IN_SIZE],
  ["lseek", decodeLseekIn, LSEEK_IN_SIZE],
  ["copy_file_range", decodeCopyFileRangeIn, COPY_FILE_RANGE_IN_SIZE],
];

/** `bytes` placed at body offset 40 of a buffer of exactly 40 + bytes.length bytes. */
function at40(bytes: Uint8Array): DataView {
  const buf = new Uint8Array(40 + bytes.length);
  buf.set(bytes, 40);
  return new DataView(buf.buffer);
}

Deno.test("abi: a body shorter than its fixed part decodes to EINVAL, never a throw", () => {
  for (const [name, decode, min] of DECODERS) {
    for (let n = 0; n < min; n++) {
      // The buffer ends where the body does: reading past `n` would throw a RangeError.
      deepStrictEqual(
        decode(at40(new Uint8Array(n).fill(0xff)), 40, n),
        ERRNO.EINVAL,
        `${name} ${n}`,
      );
    }
    ok(typeof decode(at40(new Uint8Array(min)), 40, min) === "object", `${name} at ${min}`);
  }
  deepStrictEqual(decodeForgetIn(at40(new Uint8Array(7)), 40, 7), undefined);
  deepStrictEqual(decodeInterruptIn(at40(new Uint8Array(7)), 40, 7), undefined);
  deepStrictEqual(decodeBatchForgetIn(at40(new Uint8Array(7)), 40, 7), undefined);
});

Deno.test("abi: random bodies decode to a value or an errno, never a throw", () => {
  const random = rng(Number(Deno.env.get("FUSE_FUZZ_SEED") ?? 777));
  for (let i = 0; i < 3000; i++) {
    const bytes = new Uint8Array(Math.floor(random() * 120));
    for (let j = 0; j < bytes.length; j++) bytes[j] = random() * 256;
    for (const [name, decode] of DECODERS) {
      const r = decode(at40(bytes), 40, bytes.length);
      ok(typeof r === "object" || (typeof r === "number" && r > 0), `${name}: ${r}`);
    }
  }
});

Deno.test("abi: decoders read the right fields and refuse out-of-range values by name", () => {
  const big = 2 ** 53; // first unsafe offset
  const rw = (offset: number, size: number, extra: number) =>
    body(
      [7, "u64"],
      [offset, "u64"],
      [size, "u32"],
      [1, "u32"],
      [9, "u64"],
      [0o2001, "u32"],
      [0, "u32"],
      new Uint8Array(extra),
    );
  const write = rw(4096, 3, 3);
  deepStrictEqual(decodeWriteIn(at40(write), 40, write.length), {
    fh: 7n,
    offset: 4096,
    size: 3,
    writeFlags: 1,
    lockOwner: 9n,
    flags: 0o2001,
  });
  deepStrictEqual(
    decodeWriteIn(at40(rw(0, 4, 3)), 40, WRITE_IN_SIZE + 3),
    ERRNO.EINVAL,
    "short data",
  );
  deepStrictEqual(decodeWriteIn(at40(rw(big, 0, 0)), 40, WRITE_IN_SIZE), ERRNO.EFBIG);
  deepStrictEqual(decodeReadIn(at40(rw(big, 0, 0)), 40, 40), ERRNO.EINVAL);
  deepStrictEqual(decodeReadIn(at40(rw(big - 1, 5, 0)), 40, 24), {
    fh: 7n,
    offset: big - 1,
    size: 5,
  });
  const lseek = body([1, "u64"], [big, "u64"], [3, "u32"], [0, "u32"]);
  deepStrictEqual(decodeLseekIn(at40(lseek), 40, lseek.length), ERRNO.ENXIO);
  const fa = body([1, "u64"], [0, "u64"], [big, "u64"], [0, "u32"], [0, "u32"]);
  deepStrictEqual(decodeFallocateIn(at40(fa), 40, fa.length), ERRNO.EFBIG);
  const setattr = new Uint8Array(SETATTR_IN_SIZE);
  const sv = new DataView(setattr.buffer);
  sv.setBigUint64(16, 1n << 60n, true);
  sv.setBigInt64(32, -5n, true);
  sv.setUint32(56, 7, true);
  sv.setUint32(68, 0o4755, true);
  const notSize = decodeSetattrIn(at40(setattr), 40, SETATTR_IN_SIZE);
  ok(typeof notSize === "object");
  deepStrictEqual([notSize.atime, notSize.mode], [{ sec: -5, nsec: 7 }, 0o4755]);
  sv.setUint32(0, FATTR_SIZE, true);
  deepStrictEqual(decodeSetattrIn(at40(setattr), 40, SETATTR_IN_SIZE), ERRNO.EFBIG);
  const cfr = body([1, "u64"], [2, "u64"], [3, "u64"], [4, "u64"], [5, "u64"], [2 ** 40, "u64"], [
    6,
    "u64",
  ]);
  deepStrictEqual(decodeCopyFileRangeIn(at40(cfr), 40, cfr.length), {
    fhIn: 1n,
    offsetIn: 2,
    nodeIdOut: 3n,
    fhOut: 4n,
    offsetOut: 5,
    length: 0xffffffff,
    flags: 6,
  });
  const release = body([3, "u64"], [1, "u32"], [2, "u32"], [8, "u64"]);
  deepStrictEqual(decodeReleaseIn(at40(release), 40, 16), {
    fh: 3n,
    flags: 1,
    releaseFlags: 2,
    lockOwner: 0n,
  });
  deepStrictEqual(decodeReleaseIn(at40(release), 40, 24), {
    fh: 3n,
    flags: 1,
    releaseFlags: 2,
    lockOwner: 8n,
  });
  const init = body([7, "u32"], [38, "u32"], [4096, "u32"], [Number(InitFlag.INIT_EXT), "u32"], [
    1,
    "u32",
  ]);
  deepStrictEqual(decodeInitIn(at40(init), 40, init.length), {
    major: 7,
    minor: 38,
    maxReadahead: 4096,
    flags: InitFlag.INIT_EXT | InitFlag.SECURITY_CTX,
  });
  deepStrictEqual(decodeInitIn(at40(init), 40, 8), {
    major: 7,
    minor: 38,
    maxReadahead: 0,
    flags: 0n,
  });
  const batch = body([3, "u32"], [0, "u32"], [5, "u64"], [6, "u64"], [7, "u64"], [8, "u64"]);
  const bv = at40(batch);
  deepStrictEqual(decodeBatchForgetIn(bv, 40, batch.length), { claimed: 3, present: 2 });
  deepStrictEqual([forgetOneNodeId(bv, 40, 1), forgetOneCount(bv, 40, 1)], [7n, 8n]);
  const hv = new DataView(new ArrayBuffer(40));
  hv.setUint32(0, 40, true);
  hv.setUint32(4, 22, true);
  hv.setBigUint64(8, 99n, true);
  hv.setBigUint64(16, 5n, true);
  hv.setUint32(24, 1000, true);
  hv.setUint32(28, 1001, true);
  hv.setUint32(32, 42, true);
  const h: InHeader = { len: 0, opcode: 0, unique: 0n, nodeId: 0n, uid: 0, gid: 0, pid: 0 };
  decodeInHeader(hv, h);
  deepStrictEqual(h, {
    len: 40,
    opcode: 22,
    unique: 99n,
    nodeId: 5n,
    uid: 1000,
    gid: 1001,
    pid: 42,
  });
});

Deno.test("abi: attr times and sizes encode exactly as 64-bit values", () => {
  const v = new DataView(new ArrayBuffer(88));
  const secs = [0, 1, -1, 1_700_000_000, -1_700_000_000, 2 ** 40 + 5, -(2 ** 40) - 5];
  for (const sec of [...secs, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]) {
    const t = { sec, nsec: 999_999_999 };
    encodeAttr(v, 0, {
      ino: 2n ** 64n - 1n,
      size: Math.max(0, sec),
      blocks: 7,
      atime: t,
      mtime: t,
      ctime: t,
      mode: 0o100644,
      nlink: 1,
      uid: 4294967295,
      gid: 0,
      rdev: 0,
    });
    deepStrictEqual(v.getBigInt64(24, true), BigInt(sec), `atime ${sec}`);
    deepStrictEqual(v.getBigInt64(40, true), BigInt(sec), `ctime ${sec}`);
    deepStrictEqual(v.getBigUint64(8, true), BigInt(Math.max(0, sec)), `size ${sec}`);
    deepStrictEqual(v.getBigUint64(0, true), 2n ** 64n - 1n, "ino");
    deepStrictEqual(v.getUint32(48, true), 999_999_999, "nsec");
    deepStrictEqual(v.getUint32(68, true), 4294967295, "uid");
  }
});

Deno.test("abi: timeouts split into seconds and nanoseconds; opcode names", () => {
  const v = new DataView(new ArrayBuffer(12));
  const split = (seconds: number): [bigint, number] => {
    new Uint8Array(v.buffer).fill(0xff);
    encodeTimeout(v, 0, 8, seconds);
    return [v.getBigUint64(0, true), v.getUint32(8, true)];
  };
  deepStrictEqual(split(1.5), [1n, 500_000_000]);
  deepStrictEqual(split(0), [0n, 0]);
  deepStrictEqual(split(-3), [0n, 0]);
  deepStrictEqual(split(NaN), [0n, 0]);
  deepStrictEqual(split(2 ** 40 + 0.25), [2n ** 40n, 250_000_000]);
  deepStrictEqual(split(Infinity), [BigInt(Number.MAX_SAFE_INTEGER), 0]);
  deepStrictEqual([opcodeName(1), opcodeName(45), opcodeName(4242)], [
    "LOOKUP",
    "RENAME2",
    "OP4242",
  ]);
});

Deno.test("abi: names are written in place as UTF-8 when they fit", () => {
  const bytes = new Uint8Array(32).fill(0xee);
  equal(encodeName(bytes, 2, 32, "abc"), 3);
  deepStrictEqual([...bytes.subarray(2, 5)], [0x61, 0x62, 0x63]);
  equal(encodeName(bytes, 0, 32, "é€😀"), 2 + 3 + 4);
  deepStrictEqual(new TextDecoder().decode(bytes.subarray(0, 9)), "é€😀");
  equal(encodeName(bytes, 0, 3, "abcd"), -1);
  equal(encodeName(bytes, 0, 8, "a€€€"), -1); // 4 units, 10 bytes
  equal(encodeName(bytes, 0, 10, "a€€€"), 10);
  equal(encodeName(bytes, 5, 5, ""), 0);
});

Deno.test("abi: the kernel-side encoders give back what the decoders read", () => {
  const v = new DataView(new ArrayBuffer(256));
  const header = {
    len: 88,
    opcode: abi.Opcode.READDIRPLUS,
    unique: 2n ** 40n + 3n,
    nodeId: 77n,
    uid: 1000,
    gid: 100,
    pid: 4242,
  };
  abi.encodeInHeader(v, header);
  const into = { len: 0, opcode: 0, unique: 0n, nodeId: 0n, uid: 0, gid: 0, pid: 0 };
  decodeInHeader(v, into);
  deepStrictEqual(into, header);
  abi.encodeInitIn(v, 0, { major: 7, minor: 38, maxReadahead: 131072, flags: 0x1234n });
  deepStrictEqual(decodeInitIn(v, 0, 16), {
    major: 7,
    minor: 38,
    maxReadahead: 131072,
    flags: 0x1234n,
  });
  abi.encodeOpenIn(v, 0, { flags: 0o100002 });
  deepStrictEqual(decodeOpenIn(v, 0, abi.OPEN_IN_SIZE), { flags: 0o100002 });
  abi.encodeReadIn(v, 0, { fh: 9n, offset: 2 ** 40, size: 32768 });
  deepStrictEqual(decodeReadIn(v, 0, abi.READ_IN_SIZE), { fh: 9n, offset: 2 ** 40, size: 32768 });
  const release = { fh: 5n, flags: 2, releaseFlags: 1, lockOwner: 3n };
  abi.encodeReleaseIn(v, 0, release);
  deepStrictEqual(decodeReleaseIn(v, 0, abi.RELEASE_IN_SIZE), release);
  abi.encodeGetattrIn(v, 0, { flags: 1, fh: 6n });
  deepStrictEqual(decodeGetattrIn(v, 0, abi.GETATTR_IN_SIZE), { flags: 1, fh: 6n });
  abi.encodeBatchForgetIn(v, 0, [2n, 3n], [1, 4]);
  deepStrictEqual(decodeBatchForgetIn(v, 0, 8 + 2 * 16), { claimed: 2, present: 2 });
  deepStrictEqual(
    [abi.forgetOneNodeId(v, 0, 1), abi.forgetOneCount(v, 0, 1)],
    [3n, 4n],
  );
  v.setUint32(0, 16, true);
  v.setInt32(4, -2, true);
  v.setBigUint64(8, 12n, true);
  deepStrictEqual(abi.decodeOutHeader(v), { len: 16, error: -2, unique: 12n });
  equal(abi.decodeOutHeader(new DataView(new ArrayBuffer(15))), undefined);
});

Deno.test("abi: a listing reply's last cookie, never a throw on short input", () => {
  for (const plus of [false, true]) {
    const bytes = new Uint8Array(4096);
    const v = new DataView(bytes.buffer);
    let at = 0;
    for (const [name, next] of [["a", 1], ["bcd", 2], ["efghijklm", 7]] as const) {
      const nameAt = at + (plus ? abi.DIRENTPLUS_HEADER_SIZE : abi.DIRENT_HEADER_SIZE);
      const n = encodeName(bytes, nameAt, bytes.length, name);
      at = abi.encodeDirent(bytes, v, at + (plus ? abi.ENTRY_OUT_SIZE : 0), 1n, next, 8, n);
    }
    equal(abi.lastDirentOffset(v, 0, at, plus), 7);
    equal(abi.lastDirentOffset(v, 0, 0, plus), -1);
    for (let cut = 0; cut < at; cut++) {
      const last = abi.lastDirentOffset(v, 0, cut, plus);
      ok(last === -1 || last === 1 || last === 2, `cut at ${cut}: ${last}`);
    }
  }
});
