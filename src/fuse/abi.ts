/**
 * The FUSE kernel ABI (linux/fuse.h, protocol 7.x) in one place: opcodes, flags, struct
 * layouts (byte offsets, little-endian host order), and the Linux constants the layer uses
 * (re-exported from src/linux, which defines them).
 *
 * It is the only code that knows byte offsets. Request decoders are total (short or hostile
 * input gives an errno, never a throw); reply encoders write into a caller's buffer.
 *
 * @module
 */

import { ERRNO, S_IFMT } from "../linux/mod.ts";
import type { Timestamp } from "./filesystem.ts";

// ---------------------------------------------------------------------------------------------
// Versions and sizes

export const FUSE_KERNEL_VERSION = 7;
/** The minor version this layer speaks (replies are laid out for it). */
export const FUSE_KERNEL_MINOR_VERSION = 38;
/** Oldest kernel minor version accepted (max_pages and PARALLEL_DIROPS need 7.28). */
export const FUSE_MIN_KERNEL_MINOR = 28;
export const FUSE_ROOT_ID = 1n;
export const FUSE_MIN_READ_BUFFER = 8192;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE; // 128
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE; // 104
export const OPEN_OUT_SIZE = 16;
export const WRITE_OUT_SIZE = 8;
export const STATFS_OUT_SIZE = 80;
export const GETXATTR_OUT_SIZE = 8;
export const INIT_OUT_SIZE = 64;
export const LSEEK_OUT_SIZE = 8;
export const DIRENT_HEADER_SIZE = 24;
export const DIRENTPLUS_HEADER_SIZE = ENTRY_OUT_SIZE + DIRENT_HEADER_SIZE; // 152

// ---------------------------------------------------------------------------------------------
// Opcodes

export const Opcode = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
} as const;

const opcodeNames = new Map<number, string>(
  Object.entries(Opcode).map(([name, code]) => [code, name]),
);

/** "LOOKUP", ... or "OP<n>" for unknown opcodes. */
export function opcodeName(opcode: number): string {
  return opcodeNames.get(opcode) ?? `OP${opcode}`;
}

export const NotifyCode = {
  POLL: 1,
  INVAL_INODE: 2,
  INVAL_ENTRY: 3,
  STORE: 4,
  RETRIEVE: 5,
  DELETE: 6,
} as const;

// ---------------------------------------------------------------------------------------------
// INIT flags (64 bits: flags | flags2 << 32)

export const InitFlag = {
  ASYNC_READ: 1n << 0n,
  POSIX_LOCKS: 1n << 1n,
  FILE_OPS: 1n << 2n,
  ATOMIC_O_TRUNC: 1n << 3n,
  EXPORT_SUPPORT: 1n << 4n,
  BIG_WRITES: 1n << 5n,
  DONT_MASK: 1n << 6n,
  SPLICE_WRITE: 1n << 7n,
  SPLICE_MOVE: 1n << 8n,
  SPLICE_READ: 1n << 9n,
  FLOCK_LOCKS: 1n << 10n,
  HAS_IOCTL_DIR: 1n << 11n,
  AUTO_INVAL_DATA: 1n << 12n,
  DO_READDIRPLUS: 1n << 13n,
  READDIRPLUS_AUTO: 1n << 14n,
  ASYNC_DIO: 1n << 15n,
  WRITEBACK_CACHE: 1n << 16n,
  NO_OPEN_SUPPORT: 1n << 17n,
  PARALLEL_DIROPS: 1n << 18n,
  HANDLE_KILLPRIV: 1n << 19n,
  POSIX_ACL: 1n << 20n,
  ABORT_ERROR: 1n << 21n,
  MAX_PAGES: 1n << 22n,
  CACHE_SYMLINKS: 1n << 23n,
  NO_OPENDIR_SUPPORT: 1n << 24n,
  EXPLICIT_INVAL_DATA: 1n << 25n,
  MAP_ALIGNMENT: 1n << 26n,
  SUBMOUNTS: 1n << 27n,
  HANDLE_KILLPRIV_V2: 1n << 28n,
  SETXATTR_EXT: 1n << 29n,
  INIT_EXT: 1n << 30n,
  INIT_RESERVED: 1n << 31n,
  SECURITY_CTX: 1n << 32n,
  HAS_INODE_DAX: 1n << 33n,
  CREATE_SUPP_GROUP: 1n << 34n,
  HAS_EXPIRE_ONLY: 1n << 35n,
  DIRECT_IO_ALLOW_MMAP: 1n << 36n,
  /** FUSE over io_uring (7.42, Linux 6.14 with the module parameter fuse.enable_uring). */
  OVER_IO_URING: 1n << 41n,
} as const;

// ---------------------------------------------------------------------------------------------
// FUSE over io_uring (ABI 7.42). Each ring entry registers two buffers: a header and a payload.
// Header (struct fuse_uring_req_header, 288): 0 in_out[128] (fuse_in_header of a request,
// fuse_out_header of its reply: only unique and error are read) | 128 op_in[128] (a request's
// first argument) | 256 struct fuse_uring_ent_in_out (32): 0 u64 flags | 8 u64 commit_id |
// 16 u32 payload_sz | 20 u32 padding | 24 u64 reserved.
// The payload holds a request's other arguments, and every argument of a reply.
// Commands go in the SQE's command area (struct fuse_uring_cmd_req, 24): 0 u64 flags |
// 8 u64 commit_id | 16 u16 qid | 18 pad[6].

/** Bytes of a ring entry's header buffer. */
export const URING_HEADER_SIZE = 288;
/** Offset of op_in in the header buffer (and the most bytes it holds). */
export const URING_OP_IN_OFFSET = 128;
export const URING_OP_IN_SIZE = 128;
/** Offset of fuse_uring_ent_in_out's payload_sz in the header buffer (its commit_id, at 264,
 * is the request's unique, which the layer reads from the header instead). */
export const URING_PAYLOAD_SZ_OFFSET = 256 + 16;
/** Smallest payload buffer the kernel accepts: max(8 KiB, max_write, max_pages pages). */
export function uringPayloadSize(maxWrite: number, maxPages: number): number {
  return Math.max(8192, maxWrite, maxPages * 4096);
}
/** fuse_uring_cmd values (the SQE's cmd_op). */
export const UringCmd = { REGISTER: 1, COMMIT_AND_FETCH: 2 } as const;
/** Offsets of fuse_uring_cmd_req's fields within the SQE's command area. */
export const UringCmdOffset = { COMMIT_ID: 8, QID: 16 } as const;

// FATTR_* (setattr valid bits)
export const FATTR_MODE = 1 << 0;
export const FATTR_UID = 1 << 1;
export const FATTR_GID = 1 << 2;
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_FH = 1 << 6;
export const FATTR_ATIME_NOW = 1 << 7;
export const FATTR_MTIME_NOW = 1 << 8;
export const FATTR_LOCKOWNER = 1 << 9;
export const FATTR_CTIME = 1 << 10;
export const FATTR_KILL_SUIDGID = 1 << 11;

// FOPEN_* (open_out.open_flags)
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_NONSEEKABLE = 1 << 2;
export const FOPEN_CACHE_DIR = 1 << 3;
export const FOPEN_STREAM = 1 << 4;
export const FOPEN_NOFLUSH = 1 << 5;

export const FUSE_RELEASE_FLUSH = 1 << 0;
export const FUSE_GETATTR_FH = 1 << 0;
export const FUSE_WRITE_CACHE = 1 << 0;
export const FUSE_WRITE_LOCKOWNER = 1 << 1;
export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
export const FUSE_READ_LOCKOWNER = 1 << 1;
export const FUSE_FSYNC_FDATASYNC = 1 << 0;

// ---------------------------------------------------------------------------------------------
// Request header (struct fuse_in_header, 40 bytes)
//   0 u32 len | 4 u32 opcode | 8 u64 unique | 16 u64 nodeid | 24 u32 uid | 28 u32 gid
//  32 u32 pid | 36 u16 total_extlen | 38 u16 padding

/** Byte offsets of the fuse_in_header fields a request filter on the reader thread reads. */
export const InHeaderOffset = { LEN: 0, OPCODE: 4, UNIQUE: 8, NODEID: 16 } as const;

/** The header fields the layer uses (a request object implements it: no allocation). */
export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeId: bigint;
  uid: number;
  gid: number;
  pid: number;
}

/** Reads the header of a request at least IN_HEADER_SIZE bytes long into `into`. */
export function decodeInHeader(view: DataView, into: InHeader): void {
  into.len = view.getUint32(0, true);
  into.opcode = view.getUint32(4, true);
  into.unique = view.getBigUint64(8, true);
  into.nodeId = view.getBigUint64(16, true);
  into.uid = view.getUint32(24, true);
  into.gid = view.getUint32(28, true);
  into.pid = view.getUint32(32, true);
}

/** Byte offsets of the fuse_out_header fields. */
export const OutHeaderOffset = { LEN: 0, ERROR: 4, UNIQUE: 8 } as const;

/**
 * What a request filter on the reader thread knows of the headers (it runs where nothing can be
 * imported: its module ships these with its source).
 */
export const FILTER_HEADER = {
  lenAt: InHeaderOffset.LEN,
  opcodeAt: InHeaderOffset.OPCODE,
  uniqueAt: InHeaderOffset.UNIQUE,
  nodeIdAt: InHeaderOffset.NODEID,
  /** Where the request body starts. */
  body: IN_HEADER_SIZE,
  outSize: OUT_HEADER_SIZE,
  outLenAt: OutHeaderOffset.LEN,
  outErrorAt: OutHeaderOffset.ERROR,
  outUniqueAt: OutHeaderOffset.UNIQUE,
} as const;
export type FilterHeader = typeof FILTER_HEADER;

// Reply header (struct fuse_out_header, 16 bytes): 0 u32 len | 4 i32 error (-errno) | 8 u64 unique
export function encodeOutHeader(view: DataView, len: number, error: number, unique: bigint): void {
  view.setUint32(0, len, true);
  view.setInt32(4, error, true);
  view.setBigUint64(8, unique, true);
}

/**
 * Writes a request's fuse_in_header at the start of `view` (`h.len` counts the body): the
 * kernel's side, to drive a session without the kernel (the warm-up).
 */
export function encodeInHeader(view: DataView, h: Readonly<InHeader>): void {
  view.setUint32(0, h.len, true);
  view.setUint32(4, h.opcode, true);
  view.setBigUint64(8, h.unique, true);
  view.setBigUint64(16, h.nodeId, true);
  view.setUint32(24, h.uid, true);
  view.setUint32(28, h.gid, true);
  view.setUint32(32, h.pid, true);
  view.setUint32(36, 0, true);
}

/** A reply's fuse_out_header, read by the kernel's side; undefined when shorter than one. */
export function decodeOutHeader(
  view: DataView,
): { len: number; error: number; unique: bigint } | undefined {
  if (view.byteLength < OUT_HEADER_SIZE) return undefined;
  return {
    len: view.getUint32(0, true),
    error: view.getInt32(4, true),
    unique: view.getBigUint64(8, true),
  };
}

// ---------------------------------------------------------------------------------------------
// Request bodies. Offsets are relative to the start of the body (after the 40-byte header).
//
// Decoders are total: `(view, bodyOffset, bodyLength)` gives the typed fixed part, or an errno
// for short or out-of-range input (never a throw). Names (NUL-terminated) follow the fixed
// part, whose size is the op's *_IN_SIZE constant.

/** A decoded fixed part, or a positive errno. */
export type Decoded<T> = T | number;
/** A request body decoder. */
export type Decoder<T> = (view: DataView, offset: number, length: number) => Decoded<T>;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The u64 at `o` as a safe integer, or -1 beyond 2^53 - 1. */
function safeU64(v: DataView, o: number): number {
  const x = v.getBigUint64(o, true);
  return x > MAX_SAFE ? -1 : Number(x);
}

/** fuse_init_in (7.36+: 64 bytes; older: 16). 0 major | 4 minor | 8 max_readahead | 12 flags | 16 flags2 */
export const INIT_IN_MIN_SIZE = 8;
export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: bigint;
}
export function decodeInitIn(v: DataView, o: number, n: number): Decoded<InitIn> {
  if (n < INIT_IN_MIN_SIZE) return ERRNO.EINVAL;
  const major = v.getUint32(o, true);
  const minor = v.getUint32(o + 4, true);
  if (n < 16) return { major, minor, maxReadahead: 0, flags: 0n };
  let flags = BigInt(v.getUint32(o + 12, true));
  if (n >= 20 && (flags & InitFlag.INIT_EXT) !== 0n) {
    flags |= BigInt(v.getUint32(o + 16, true)) << 32n;
  }
  return { major, minor, maxReadahead: v.getUint32(o + 8, true), flags };
}
/** Writes a 16-byte fuse_init_in (the kernel's side; flags of the first word only). */
export function encodeInitIn(v: DataView, o: number, init: Readonly<InitIn>): void {
  v.setUint32(o, init.major, true);
  v.setUint32(o + 4, init.minor, true);
  v.setUint32(o + 8, init.maxReadahead, true);
  v.setUint32(o + 12, Number(BigInt.asUintN(32, init.flags)), true);
}

/** fuse_forget_in (8): 0 u64 nlookup */
export const FORGET_IN_SIZE = 8;
/** nlookup of a FORGET, or undefined when short (FORGET gets no reply). */
export function decodeForgetIn(v: DataView, o: number, n: number): bigint | undefined {
  return n < FORGET_IN_SIZE ? undefined : v.getBigUint64(o, true);
}

/** fuse_batch_forget_in (8): 0 u32 count | 4 u32 dummy; then count × fuse_forget_one (16) */
export const BATCH_FORGET_IN_SIZE = 8;
export const FORGET_ONE_SIZE = 16;
/** Entries a BATCH_FORGET claims and how many its body holds (-1, -1 when short). */
export function decodeBatchForgetIn(
  v: DataView,
  o: number,
  n: number,
): { claimed: number; present: number } | undefined {
  if (n < BATCH_FORGET_IN_SIZE) return undefined;
  return {
    claimed: v.getUint32(o, true),
    present: Math.floor((n - BATCH_FORGET_IN_SIZE) / FORGET_ONE_SIZE),
  };
}
/** fuse_forget_one i (below `present`): 0 u64 nodeid | 8 u64 nlookup. */
export function forgetOneNodeId(v: DataView, o: number, i: number): bigint {
  return v.getBigUint64(o + BATCH_FORGET_IN_SIZE + i * FORGET_ONE_SIZE, true);
}
export function forgetOneCount(v: DataView, o: number, i: number): bigint {
  return v.getBigUint64(o + BATCH_FORGET_IN_SIZE + i * FORGET_ONE_SIZE + 8, true);
}
/** Writes a BATCH_FORGET body: `nodes[i]` with `counts[i]` lookups (the kernel's side). */
export function encodeBatchForgetIn(
  v: DataView,
  o: number,
  nodes: readonly bigint[],
  counts: readonly number[],
): void {
  v.setUint32(o, nodes.length, true);
  v.setUint32(o + 4, 0, true);
  for (let i = 0; i < nodes.length; i++) {
    v.setBigUint64(o + BATCH_FORGET_IN_SIZE + i * FORGET_ONE_SIZE, nodes[i], true);
    u64(v, o + BATCH_FORGET_IN_SIZE + i * FORGET_ONE_SIZE + 8, counts[i]);
  }
}

/** fuse_interrupt_in (8): 0 u64 unique */
export const INTERRUPT_IN_SIZE = 8;
/** The unique id an INTERRUPT targets, or undefined when short (it gets no reply then). */
export function decodeInterruptIn(v: DataView, o: number, n: number): bigint | undefined {
  return n < INTERRUPT_IN_SIZE ? undefined : v.getBigUint64(o, true);
}

/** fuse_getattr_in (16): 0 u32 getattr_flags | 4 u32 dummy | 8 u64 fh */
export const GETATTR_IN_SIZE = 16;
export interface GetattrIn {
  flags: number;
  fh: bigint;
}
export function decodeGetattrIn(v: DataView, o: number, n: number): Decoded<GetattrIn> {
  if (n < GETATTR_IN_SIZE) return ERRNO.EINVAL;
  return { flags: v.getUint32(o, true), fh: v.getBigUint64(o + 8, true) };
}
/** Writes a fuse_getattr_in (the kernel's side). */
export function encodeGetattrIn(v: DataView, o: number, g: Readonly<GetattrIn>): void {
  v.setUint32(o, g.flags, true);
  v.setUint32(o + 4, 0, true);
  v.setBigUint64(o + 8, g.fh, true);
}

/**
 * fuse_setattr_in (88): 0 valid | 4 pad | 8 fh | 16 size | 24 lock_owner | 32 atime | 40 mtime
 * | 48 ctime | 56 atimensec | 60 mtimensec | 64 ctimensec | 68 mode | 72 unused | 76 uid | 80 gid
 * | 84 unused. A size beyond 2^53 - 1 is EFBIG (with FATTR_SIZE).
 */
export const SETATTR_IN_SIZE = 88;
export interface SetattrIn {
  valid: number;
  fh: bigint;
  size: number;
  atime: Timestamp;
  mtime: Timestamp;
  ctime: Timestamp;
  mode: number;
  uid: number;
  gid: number;
}
function time(v: DataView, o: number, nsecAt: number): Timestamp {
  return { sec: Number(v.getBigInt64(o, true)), nsec: v.getUint32(nsecAt, true) };
}
export function decodeSetattrIn(v: DataView, o: number, n: number): Decoded<SetattrIn> {
  if (n < SETATTR_IN_SIZE) return ERRNO.EINVAL;
  const valid = v.getUint32(o, true);
  const size = safeU64(v, o + 16);
  if (size < 0 && (valid & FATTR_SIZE) !== 0) return ERRNO.EFBIG;
  return {
    valid,
    fh: v.getBigUint64(o + 8, true),
    size,
    atime: time(v, o + 32, o + 56),
    mtime: time(v, o + 40, o + 60),
    ctime: time(v, o + 48, o + 64),
    mode: v.getUint32(o + 68, true),
    uid: v.getUint32(o + 76, true),
    gid: v.getUint32(o + 80, true),
  };
}

/** fuse_mknod_in (16): 0 mode | 4 rdev | 8 umask | 12 pad; then name\0 */
export const MKNOD_IN_SIZE = 16;
export interface MknodIn {
  mode: number;
  rdev: number;
  umask: number;
}
export function decodeMknodIn(v: DataView, o: number, n: number): Decoded<MknodIn> {
  if (n < MKNOD_IN_SIZE) return ERRNO.EINVAL;
  return {
    mode: v.getUint32(o, true),
    rdev: v.getUint32(o + 4, true),
    umask: v.getUint32(o + 8, true),
  };
}

/** fuse_mkdir_in (8): 0 mode | 4 umask; then name\0 */
export const MKDIR_IN_SIZE = 8;
export interface MkdirIn {
  mode: number;
  umask: number;
}
export function decodeMkdirIn(v: DataView, o: number, n: number): Decoded<MkdirIn> {
  if (n < MKDIR_IN_SIZE) return ERRNO.EINVAL;
  return { mode: v.getUint32(o, true), umask: v.getUint32(o + 4, true) };
}

/** fuse_rename_in (8): 0 u64 newdir; then old\0 new\0 */
export const RENAME_IN_SIZE = 8;
/** fuse_rename2_in (16): 0 u64 newdir | 8 u32 flags | 12 pad; then old\0 new\0 */
export const RENAME2_IN_SIZE = 16;
export interface RenameIn {
  newDir: bigint;
  flags: number;
}
export function decodeRenameIn(v: DataView, o: number, n: number): Decoded<RenameIn> {
  if (n < RENAME_IN_SIZE) return ERRNO.EINVAL;
  return { newDir: v.getBigUint64(o, true), flags: 0 };
}
export function decodeRename2In(v: DataView, o: number, n: number): Decoded<RenameIn> {
  if (n < RENAME2_IN_SIZE) return ERRNO.EINVAL;
  return { newDir: v.getBigUint64(o, true), flags: v.getUint32(o + 8, true) };
}

/** fuse_link_in (8): 0 u64 oldnodeid; then name\0 */
export const LINK_IN_SIZE = 8;
export interface LinkIn {
  oldNodeId: bigint;
}
export function decodeLinkIn(v: DataView, o: number, n: number): Decoded<LinkIn> {
  if (n < LINK_IN_SIZE) return ERRNO.EINVAL;
  return { oldNodeId: v.getBigUint64(o, true) };
}

/** fuse_open_in (8): 0 flags | 4 open_flags */
export const OPEN_IN_SIZE = 8;
export interface OpenIn {
  flags: number;
}
export function decodeOpenIn(v: DataView, o: number, n: number): Decoded<OpenIn> {
  if (n < OPEN_IN_SIZE) return ERRNO.EINVAL;
  return { flags: v.getUint32(o, true) };
}
/** Writes a fuse_open_in (the kernel's side; no open_flags). */
export function encodeOpenIn(v: DataView, o: number, open: Readonly<OpenIn>): void {
  v.setUint32(o, open.flags, true);
  v.setUint32(o + 4, 0, true);
}

/** fuse_create_in (16): 0 flags | 4 mode | 8 umask | 12 open_flags; then name\0 */
export const CREATE_IN_SIZE = 16;
export interface CreateIn {
  flags: number;
  mode: number;
  umask: number;
}
export function decodeCreateIn(v: DataView, o: number, n: number): Decoded<CreateIn> {
  if (n < CREATE_IN_SIZE) return ERRNO.EINVAL;
  return {
    flags: v.getUint32(o, true),
    mode: v.getUint32(o + 4, true),
    umask: v.getUint32(o + 8, true),
  };
}

/** fuse_read_in (40): 0 fh | 8 offset | 16 size | 20 read_flags | 24 lock_owner | 32 flags | 36 pad */
export const READ_IN_SIZE = 40;
/** READ and READDIR need only fh, offset, size and read_flags: shorter bodies are accepted. */
export const READ_IN_MIN_SIZE = 24;
export interface ReadIn {
  fh: bigint;
  /** Offset (beyond 2^53 - 1: EINVAL). */
  offset: number;
  size: number;
}
export function decodeReadIn(v: DataView, o: number, n: number): Decoded<ReadIn> {
  if (n < READ_IN_MIN_SIZE) return ERRNO.EINVAL;
  const offset = safeU64(v, o + 8);
  if (offset < 0) return ERRNO.EINVAL;
  return { fh: v.getBigUint64(o, true), offset, size: v.getUint32(o + 16, true) };
}
/** Writes a fuse_read_in of READ_IN_SIZE bytes (the kernel's side; no flags or lock owner). */
export function encodeReadIn(v: DataView, o: number, read: Readonly<ReadIn>): void {
  new Uint8Array(v.buffer, v.byteOffset + o, READ_IN_SIZE).fill(0);
  v.setBigUint64(o, read.fh, true);
  u64(v, o + 8, read.offset);
  v.setUint32(o + 16, read.size, true);
}

/** fuse_write_in (40): same layout as read_in; the data follows at WRITE_IN_SIZE. */
export const WRITE_IN_SIZE = 40;
/** Where fuse_write_in's fields sit in its body (the reader's early answers read them too). */
export const WriteInOffset = {
  FH: 0,
  OFFSET: 8,
  SIZE: 16,
  WRITE_FLAGS: 20,
  LOCK_OWNER: 24,
  FLAGS: 32,
} as const;
export interface WriteIn {
  fh: bigint;
  /** Offset (beyond 2^53 - 1: EFBIG). */
  offset: number;
  /** Data bytes; the body holds them all (else EINVAL). */
  size: number;
  writeFlags: number;
  lockOwner: bigint;
  flags: number;
}
export function decodeWriteIn(v: DataView, o: number, n: number): Decoded<WriteIn> {
  if (n < WRITE_IN_SIZE) return ERRNO.EINVAL;
  const offset = safeU64(v, o + WriteInOffset.OFFSET);
  if (offset < 0) return ERRNO.EFBIG;
  const size = v.getUint32(o + WriteInOffset.SIZE, true);
  if (size > n - WRITE_IN_SIZE) return ERRNO.EINVAL;
  return {
    fh: v.getBigUint64(o + WriteInOffset.FH, true),
    offset,
    size,
    writeFlags: v.getUint32(o + WriteInOffset.WRITE_FLAGS, true),
    lockOwner: v.getBigUint64(o + WriteInOffset.LOCK_OWNER, true),
    flags: v.getUint32(o + WriteInOffset.FLAGS, true),
  };
}

/** fuse_release_in (24): 0 u64 fh | 8 flags | 12 release_flags | 16 u64 lock_owner */
export const RELEASE_IN_SIZE = 24;
/** lock_owner is optional (0 when absent). */
export const RELEASE_IN_MIN_SIZE = 16;
export interface ReleaseIn {
  fh: bigint;
  flags: number;
  releaseFlags: number;
  lockOwner: bigint;
}
export function decodeReleaseIn(v: DataView, o: number, n: number): Decoded<ReleaseIn> {
  if (n < RELEASE_IN_MIN_SIZE) return ERRNO.EINVAL;
  return {
    fh: v.getBigUint64(o, true),
    flags: v.getUint32(o + 8, true),
    releaseFlags: v.getUint32(o + 12, true),
    lockOwner: n >= RELEASE_IN_SIZE ? v.getBigUint64(o + 16, true) : 0n,
  };
}
/** Writes a fuse_release_in of RELEASE_IN_SIZE bytes (the kernel's side). */
export function encodeReleaseIn(v: DataView, o: number, release: Readonly<ReleaseIn>): void {
  v.setBigUint64(o, release.fh, true);
  v.setUint32(o + 8, release.flags, true);
  v.setUint32(o + 12, release.releaseFlags, true);
  v.setBigUint64(o + 16, release.lockOwner, true);
}

/** fuse_flush_in (24): 0 u64 fh | 8 unused | 12 pad | 16 u64 lock_owner */
export const FLUSH_IN_SIZE = 24;
export const FlushInOffset = { FH: 0, LOCK_OWNER: 16 } as const;
export interface FlushIn {
  fh: bigint;
  lockOwner: bigint;
}
export function decodeFlushIn(v: DataView, o: number, n: number): Decoded<FlushIn> {
  if (n < FLUSH_IN_SIZE) return ERRNO.EINVAL;
  return {
    fh: v.getBigUint64(o + FlushInOffset.FH, true),
    lockOwner: v.getBigUint64(o + FlushInOffset.LOCK_OWNER, true),
  };
}

/** fuse_fsync_in (16): 0 u64 fh | 8 fsync_flags | 12 pad */
export const FSYNC_IN_SIZE = 16;
export interface FsyncIn {
  fh: bigint;
  datasync: boolean;
}
export function decodeFsyncIn(v: DataView, o: number, n: number): Decoded<FsyncIn> {
  if (n < FSYNC_IN_SIZE) return ERRNO.EINVAL;
  return {
    fh: v.getBigUint64(o, true),
    datasync: (v.getUint32(o + 8, true) & FUSE_FSYNC_FDATASYNC) !== 0,
  };
}

/** fuse_setxattr_in compat (8): 0 size | 4 flags; then name\0 value (SETXATTR_EXT not negotiated) */
export const SETXATTR_IN_SIZE = 8;
export interface SetxattrIn {
  size: number;
  flags: number;
}
export function decodeSetxattrIn(v: DataView, o: number, n: number): Decoded<SetxattrIn> {
  if (n < SETXATTR_IN_SIZE) return ERRNO.EINVAL;
  return { size: v.getUint32(o, true), flags: v.getUint32(o + 4, true) };
}

/** fuse_getxattr_in (8): 0 size | 4 pad; then name\0 (GETXATTR; LISTXATTR has no name) */
export const GETXATTR_IN_SIZE = 8;
export interface GetxattrIn {
  /** The caller's buffer size: 0 asks for the size only. */
  size: number;
}
export function decodeGetxattrIn(v: DataView, o: number, n: number): Decoded<GetxattrIn> {
  if (n < GETXATTR_IN_SIZE) return ERRNO.EINVAL;
  return { size: v.getUint32(o, true) };
}

/** fuse_access_in (8): 0 mask | 4 pad */
export const ACCESS_IN_SIZE = 8;
export interface AccessIn {
  mask: number;
}
export function decodeAccessIn(v: DataView, o: number, n: number): Decoded<AccessIn> {
  if (n < ACCESS_IN_SIZE) return ERRNO.EINVAL;
  return { mask: v.getUint32(o, true) };
}

/** fuse_fallocate_in (32): 0 fh | 8 offset | 16 length | 24 mode | 28 pad */
export const FALLOCATE_IN_SIZE = 32;
export interface FallocateIn {
  fh: bigint;
  /** Offset and length beyond 2^53 - 1: EFBIG. */
  offset: number;
  length: number;
  mode: number;
}
export function decodeFallocateIn(v: DataView, o: number, n: number): Decoded<FallocateIn> {
  if (n < FALLOCATE_IN_SIZE) return ERRNO.EINVAL;
  const offset = safeU64(v, o + 8), length = safeU64(v, o + 16);
  if (offset < 0 || length < 0) return ERRNO.EFBIG;
  return { fh: v.getBigUint64(o, true), offset, length, mode: v.getUint32(o + 24, true) };
}

/** fuse_lseek_in (24): 0 fh | 8 offset | 16 whence | 20 pad */
export const LSEEK_IN_SIZE = 24;
export interface LseekIn {
  fh: bigint;
  /** Offset beyond 2^53 - 1: ENXIO. */
  offset: number;
  whence: number;
}
export function decodeLseekIn(v: DataView, o: number, n: number): Decoded<LseekIn> {
  if (n < LSEEK_IN_SIZE) return ERRNO.EINVAL;
  const offset = safeU64(v, o + 8);
  if (offset < 0) return ERRNO.ENXIO;
  return { fh: v.getBigUint64(o, true), offset, whence: v.getUint32(o + 16, true) };
}

/** fuse_copy_file_range_in (56): 0 fh_in | 8 off_in | 16 nodeid_out | 24 fh_out | 32 off_out | 40 len | 48 flags */
export const COPY_FILE_RANGE_IN_SIZE = 56;
export interface CopyFileRangeIn {
  fhIn: bigint;
  /** Offsets beyond 2^53 - 1: EINVAL. */
  offsetIn: number;
  nodeIdOut: bigint;
  fhOut: bigint;
  offsetOut: number;
  /** At most 2^32 - 1 (the reply's size field is 32 bits). */
  length: number;
  flags: number;
}
export function decodeCopyFileRangeIn(v: DataView, o: number, n: number): Decoded<CopyFileRangeIn> {
  if (n < COPY_FILE_RANGE_IN_SIZE) return ERRNO.EINVAL;
  const offsetIn = safeU64(v, o + 8), offsetOut = safeU64(v, o + 32);
  if (offsetIn < 0 || offsetOut < 0) return ERRNO.EINVAL;
  const len = safeU64(v, o + 40);
  return {
    fhIn: v.getBigUint64(o, true),
    offsetIn,
    nodeIdOut: v.getBigUint64(o + 16, true),
    fhOut: v.getBigUint64(o + 24, true),
    offsetOut,
    length: Math.min(len < 0 ? 0xffffffff : len, 0xffffffff),
    flags: Number(v.getBigUint64(o + 48, true) & 0xffffffffn),
  };
}

// ---------------------------------------------------------------------------------------------
// Reply bodies

/** The attributes as the layer encodes them (see filesystem.ts `Attr`). */
export interface AttrFields {
  ino: bigint;
  size: number;
  blocks: number;
  atime: { sec: number; nsec: number };
  mtime: { sec: number; nsec: number };
  ctime: { sec: number; nsec: number };
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize?: number;
}

const TWO32 = 4294967296;

/** Writes a non-negative safe integer as u64 without BigInt (negative/NaN → 0). */
function u64(v: DataView, o: number, x: number): void {
  if (!(x > 0)) x = 0;
  else if (x > Number.MAX_SAFE_INTEGER) x = Number.MAX_SAFE_INTEGER;
  else x = Math.floor(x);
  v.setUint32(o, x % TWO32, true);
  v.setUint32(o + 4, Math.floor(x / TWO32), true);
}

/** Writes a safe integer as two's-complement i64 without BigInt. */
function i64(v: DataView, o: number, x: number): void {
  x = Math.trunc(x) || 0;
  if (x >= 0) return u64(v, o, x);
  if (x < -Number.MAX_SAFE_INTEGER) x = -Number.MAX_SAFE_INTEGER;
  // -x - 1 fits in the positive range; complement both halves.
  const m = -x - 1;
  v.setUint32(o, ~(m % TWO32) >>> 0, true);
  v.setUint32(o + 4, ~Math.floor(m / TWO32) >>> 0, true);
}

/**
 * fuse_attr (88): 0 ino | 8 size | 16 blocks | 24 atime | 32 mtime | 40 ctime | 48 atimensec
 * | 52 mtimensec | 56 ctimensec | 60 mode | 64 nlink | 68 uid | 72 gid | 76 rdev | 80 blksize
 * | 84 flags
 */
export function encodeAttr(v: DataView, o: number, a: AttrFields): void {
  v.setBigUint64(o, BigInt.asUintN(64, a.ino), true);
  u64(v, o + 8, a.size);
  u64(v, o + 16, a.blocks);
  i64(v, o + 24, a.atime.sec);
  i64(v, o + 32, a.mtime.sec);
  i64(v, o + 40, a.ctime.sec);
  v.setUint32(o + 48, a.atime.nsec >>> 0, true);
  v.setUint32(o + 52, a.mtime.nsec >>> 0, true);
  v.setUint32(o + 56, a.ctime.nsec >>> 0, true);
  v.setUint32(o + 60, a.mode >>> 0, true);
  v.setUint32(o + 64, a.nlink >>> 0, true);
  v.setUint32(o + 68, a.uid >>> 0, true);
  v.setUint32(o + 72, a.gid >>> 0, true);
  v.setUint32(o + 76, a.rdev >>> 0, true);
  v.setUint32(o + 80, (a.blksize ?? 4096) >>> 0, true);
  v.setUint32(o + 84, 0, true);
}

/**
 * Writes a timeout in seconds as whole seconds (u64 at `secAt`, at most 2^53 - 1) and
 * nanoseconds (u32 at `nsecAt`); negative or NaN is 0. No BigInt: it runs per entry.
 */
export function encodeTimeout(v: DataView, secAt: number, nsecAt: number, seconds: number): void {
  if (!(seconds > 0)) {
    u64(v, secAt, 0);
    v.setUint32(nsecAt, 0, true);
    return;
  }
  const whole = Math.floor(seconds);
  u64(v, secAt, whole);
  v.setUint32(nsecAt, Math.min(999_999_999, Math.round((seconds - whole) * 1e9)) || 0, true);
}

/**
 * fuse_entry_out (128): 0 nodeid | 8 generation | 16 entry_valid | 24 attr_valid
 * | 32 entry_valid_nsec | 36 attr_valid_nsec | 40 attr
 */
export function encodeEntryOut(
  v: DataView,
  o: number,
  nodeId: bigint,
  generation: number,
  entryTimeout: number,
  attrTimeout: number,
  attr: AttrFields | undefined,
): void {
  v.setBigUint64(o, nodeId, true);
  u64(v, o + 8, generation);
  encodeTimeout(v, o + 16, o + 32, entryTimeout);
  encodeTimeout(v, o + 24, o + 36, attrTimeout);
  if (attr) encodeAttr(v, o + 40, attr);
  else new Uint8Array(v.buffer, v.byteOffset + o + 40, ATTR_SIZE).fill(0);
}

/** Sets the nodeid of a fuse_entry_out encoded at `o` (known only once the node is entered). */
export function encodeEntryNodeId(v: DataView, o: number, nodeId: bigint): void {
  v.setBigUint64(o, nodeId, true);
}

/** fuse_attr_out (104): 0 attr_valid | 8 attr_valid_nsec | 12 dummy | 16 attr */
export function encodeAttrOut(v: DataView, o: number, timeout: number, attr: AttrFields): void {
  encodeTimeout(v, o, o + 8, timeout);
  v.setUint32(o + 12, 0, true);
  encodeAttr(v, o + 16, attr);
}

/** fuse_open_out (16): 0 fh | 8 open_flags | 12 pad */
export function encodeOpenOut(v: DataView, o: number, fh: bigint, openFlags: number): void {
  v.setBigUint64(o, fh, true);
  v.setUint32(o + 8, openFlags, true);
  v.setUint32(o + 12, 0, true);
}

/**
 * fuse_kstatfs (80): 0 blocks | 8 bfree | 16 bavail | 24 files | 32 ffree | 40 bsize
 * | 44 namelen | 48 frsize | 52 pad | 56 spare[6]
 */
export interface StatfsFields {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}
export function encodeStatfsOut(v: DataView, o: number, s: StatfsFields): void {
  u64(v, o, s.blocks);
  u64(v, o + 8, s.bfree);
  u64(v, o + 16, s.bavail);
  u64(v, o + 24, s.files);
  u64(v, o + 32, s.ffree);
  v.setUint32(o + 40, s.bsize >>> 0, true);
  v.setUint32(o + 44, s.namelen >>> 0, true);
  v.setUint32(o + 48, s.frsize >>> 0, true);
}

/** fuse_dirent (24 + name, padded to 8): 0 ino | 8 off | 16 namelen | 20 type | 24 name */
export function direntSize(nameLength: number, plus: boolean): number {
  const base = (plus ? DIRENTPLUS_HEADER_SIZE : DIRENT_HEADER_SIZE) + nameLength;
  return (base + 7) & ~7;
}

/** Writes a fuse_dirent's header and padding at `o`; its name is already at `o + 24`. */
export function encodeDirent(
  bytes: Uint8Array,
  v: DataView,
  o: number,
  ino: bigint,
  off: number,
  type: number,
  nameLength: number,
): number {
  v.setBigUint64(o, BigInt.asUintN(64, ino), true);
  u64(v, o + 8, off);
  v.setUint32(o + 16, nameLength, true);
  v.setUint32(o + 20, type, true);
  const end = o + DIRENT_HEADER_SIZE + nameLength;
  const padded = (end + 7) & ~7;
  bytes.fill(0, end, padded);
  return padded;
}

const nameEncoder = new TextEncoder();

/**
 * Writes `name` as UTF-8 at `o` of `bytes` when it takes at most `end - o` bytes: its length in
 * bytes, or -1 when it does not fit (bytes from `o` to `end` may have been written). ASCII names
 * are copied without allocating.
 */
export function encodeName(bytes: Uint8Array, o: number, end: number, name: string): number {
  const n = name.length;
  if (n > end - o) return -1;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x80) {
      const { read, written } = nameEncoder.encodeInto(name, bytes.subarray(o, end));
      return read === n ? written : -1;
    }
    bytes[o + i] = c;
  }
  return n;
}

/**
 * The `off` of the last entry of a READDIR(PLUS) reply body (`body` bytes from `o`), the cookie
 * to read on from; -1 when the body holds no whole entry. Never throws.
 */
export function lastDirentOffset(v: DataView, o: number, body: number, plus: boolean): number {
  const end = Math.min(v.byteLength, o + body);
  const header = plus ? DIRENTPLUS_HEADER_SIZE : DIRENT_HEADER_SIZE;
  const offAt = plus ? ENTRY_OUT_SIZE + 8 : 8;
  const lengthAt = plus ? ENTRY_OUT_SIZE + 16 : 16;
  let last = -1;
  for (let at = o; at + header <= end;) {
    const next = at + ((header + v.getUint32(at + lengthAt, true) + 7) & ~7);
    if (next > end) break;
    last = safeU64(v, at + offAt);
    at = next;
  }
  return last;
}

/** The dirent type (DT_*) of a file mode. */
export function direntType(mode: number): number {
  return (mode & S_IFMT) >>> 12;
}

/** fuse_init_out (64). */
export interface InitOut {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: bigint;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  timeGran: number;
  maxPages: number;
}
/**
 * 0 major | 4 minor | 8 max_readahead | 12 flags | 16 u16 max_background
 * | 18 u16 congestion_threshold | 20 max_write | 24 time_gran | 28 u16 max_pages
 * | 30 u16 map_alignment | 32 flags2 | 36 unused
 */
export function encodeInitOut(v: DataView, o: number, x: InitOut): void {
  v.setUint32(o, x.major, true);
  v.setUint32(o + 4, x.minor, true);
  v.setUint32(o + 8, x.maxReadahead, true);
  v.setUint32(o + 12, Number(x.flags & 0xffffffffn), true);
  v.setUint16(o + 16, x.maxBackground, true);
  v.setUint16(o + 18, x.congestionThreshold, true);
  v.setUint32(o + 20, x.maxWrite, true);
  v.setUint32(o + 24, x.timeGran, true);
  v.setUint16(o + 28, x.maxPages, true);
  v.setUint16(o + 30, 0, true); // map_alignment
  v.setUint32(o + 32, Number((x.flags >> 32n) & 0xffffffffn), true);
}

/** The short INIT reply (8) that tells a newer kernel our version: 0 major | 4 minor */
export const INIT_VERSION_OUT_SIZE = 8;
export function encodeInitVersionOut(v: DataView, o: number, major: number, minor: number): void {
  v.setUint32(o, major, true);
  v.setUint32(o + 4, minor, true);
}

/** fuse_write_out (8): 0 size | 4 pad (also COPY_FILE_RANGE's reply) */
export function encodeWriteOut(v: DataView, o: number, size: number): void {
  v.setUint32(o, size, true);
  v.setUint32(o + 4, 0, true);
}

/** fuse_getxattr_out (8): 0 size | 4 pad (the size probe's answer; also LISTXATTR's) */
export function encodeGetxattrOut(v: DataView, o: number, size: number): void {
  v.setUint32(o, size, true);
  v.setUint32(o + 4, 0, true);
}

/** fuse_lseek_out (8): 0 u64 offset */
export function encodeLseekOut(v: DataView, o: number, offset: number): void {
  u64(v, o, offset);
}

/** fuse_notify_inval_inode_out (24): 0 ino(nodeid) | 8 i64 off | 16 i64 len */
export const NOTIFY_INVAL_INODE_SIZE = 24;
export function encodeNotifyInvalInode(
  v: DataView,
  o: number,
  nodeId: bigint,
  offset: number,
  length: number,
): void {
  v.setBigUint64(o, nodeId, true);
  v.setBigInt64(o + 8, BigInt(offset), true);
  v.setBigInt64(o + 16, BigInt(length), true);
}

/** fuse_notify_store_out (24): 0 nodeid | 8 u64 offset | 16 u32 size | 20 pad; then the data */
export const NOTIFY_STORE_SIZE = 24;
export function encodeNotifyStore(
  v: DataView,
  o: number,
  nodeId: bigint,
  offset: number,
  size: number,
): void {
  v.setBigUint64(o, nodeId, true);
  v.setBigUint64(o + 8, BigInt(offset), true);
  v.setUint32(o + 16, size, true);
  v.setUint32(o + 20, 0, true);
}

/** fuse_notify_inval_entry_out (16): 0 parent | 8 namelen | 12 flags; then name\0 */
export const NOTIFY_INVAL_ENTRY_SIZE = 16;
export function encodeNotifyInvalEntry(
  v: DataView,
  o: number,
  parent: bigint,
  nameLength: number,
): void {
  v.setBigUint64(o, parent, true);
  v.setUint32(o + 8, nameLength, true);
  v.setUint32(o + 12, 0, true);
}
