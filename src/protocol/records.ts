/**
 * Attributes and directory entries as fixed-layout records: what a listing sends instead of an
 * object per entry, and what a single Stat travels as.
 *
 * A listing travels as `{ names, records }` (and `targets` in a walk): `names[i]` is entry i's
 * name, and bytes `[i * RECORD_BYTES, (i + 1) * RECORD_BYTES)` of `records` are its record, little
 * endian (x86_64 and aarch64 alike):
 *
 * | bytes   | what                                                                      |
 * | ------- | ------------------------------------------------------------------------- |
 * | 0–143   | `struct statx` as the kernel filled it (STATX_BASIC_STATS), copied whole  |
 * | 144–151 | the entry's readdir cookie (`d_off`), u64                                 |
 * | 152     | its `d_type`                                                              |
 * | 153     | flags: {@link RecordFlag}                                                 |
 * | 154–159 | zero                                                                      |
 *
 * An entry's inode number is `stx_ino` (bytes 32–39): with attributes, statx's (so `d_ino` and
 * `st_ino` agree, as overlayfs makes them), else getdents64's; without {@link RecordFlag.STAT}
 * (".", "..", an entry whose statx failed) nothing else is set. The satellite copies statx's buffer into the record
 * with no object in between; the client's `parse` reads the fields it uses with one DataView.
 * Every field is a plain number, so no bytes can make an invalid record, except a time beyond
 * 2^53 seconds, which `parse` refuses.
 *
 * @module
 */

import { DIRENT64 } from "../linux/mod.ts";
import { INVALID, type Invalid, name, type Schema } from "./schema.ts";

/**
 * An inode's identity, as both sides name it (`Change.dir` keys are these): device and inode
 * number, since inode numbers repeat across a container's filesystems.
 */
export function inodeKey(stat: Stat): string {
  return `${stat.devMajor}:${stat.devMinor}:${stat.ino}`;
}

/** Bytes of one record. */
export const RECORD_BYTES = 160;

/** Bits of a record's flags byte. */
export const RecordFlag = {
  /** Bytes 0–143 hold the entry's attributes. */
  STAT: 1,
  /** Whether the entry has extended attributes is known (XATTRS says which). */
  XATTRS_KNOWN: 2,
  /** The entry has extended attributes. */
  XATTRS: 4,
} as const;

/** Bytes of statx's buffer a record keeps. */
export const STATX_RECORD_BYTES = 144;

/** Offsets within a record (those of struct statx, then the entry's own). */
const AT = {
  blksize: 4,
  nlink: 16,
  uid: 20,
  gid: 24,
  mode: 28,
  ino: 32,
  size: 40,
  blocks: 48,
  atime: 64,
  ctime: 96,
  mtime: 112,
  rdevMajor: 128,
  rdevMinor: 132,
  devMajor: 136,
  devMinor: 140,
  cookie: 144,
  type: 152,
  flags: 153,
} as const;

/** File attributes (from struct statx). */
export interface Stat {
  ino: bigint;
  /** File type and permission bits (S_IFMT | 07777). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  /** Device holding the inode: (dev, ino) identifies it across the container's filesystems. */
  devMajor: number;
  devMinor: number;
  size: bigint;
  /** Allocated 512-byte blocks. */
  blocks: bigint;
  blksize: number;
  atimeSec: number;
  atimeNsec: number;
  mtimeSec: number;
  mtimeNsec: number;
  ctimeSec: number;
  ctimeNsec: number;
  /**
   * Whether the inode has extended attributes (llistxattr non-empty); absent when unknown. Lets
   * the client answer the kernel's per-file getxattr probes (ACLs, security.capability) locally.
   */
  hasXattrs?: boolean;
}

/** A name (UTF-8 string, or bytes when not valid UTF-8) as listings carry it. */
export type EntryName = string | Uint8Array;

/** One directory entry; `offset` is the cookie to pass to continue after it. */
export interface DirEntry {
  name: EntryName;
  ino: bigint;
  /** DT_* type (DT_UNKNOWN 0, DT_DIR 4, DT_REG 8, DT_LNK 10, ...). */
  type: number;
  offset: bigint;
  /** Attributes when asked (`plus`); absent for "." and ".." and entries that vanished. */
  stat?: Stat;
}

/** A directory entry of a `walk`: a readdir `plus` entry, with a symlink's target. */
export interface WalkEntry extends DirEntry {
  /** The target of a symlink (absent when it could not be read). */
  target?: EntryName;
}

/** A listing as the satellite sends it. */
export interface EntryList {
  names: EntryName[];
  /** `names.length` records. */
  records: Uint8Array;
  /** A walk's symlink targets by entry (null: none); absent when there are none. */
  targets?: (EntryName | null)[];
}

/** The high word of an i64 in ±(2^53 - 1) is in (-2^21, 2^21), or -2^21 with a low word above 0. */
const HIGH_LIMIT = 2 ** 21;
const WORD = 2 ** 32;

/** Whether the i64 at `at` (a time's seconds) is within ±(2^53 - 1): read as two words, no BigInt. */
function inRange(view: DataView, at: number): boolean {
  const high = view.getInt32(at + 4, true);
  return (high > -HIGH_LIMIT && high < HIGH_LIMIT) ||
    (high === -HIGH_LIMIT && view.getUint32(at, true) !== 0);
}

/** The i64 at `at` as a number, clamped to ±(2^53 - 1) (exact within). */
function seconds(view: DataView, at: number): number {
  if (!inRange(view, at)) {
    return view.getInt32(at + 4, true) < 0 ? -Number.MAX_SAFE_INTEGER : Number.MAX_SAFE_INTEGER;
  }
  return view.getInt32(at + 4, true) * WORD + view.getUint32(at, true);
}

/**
 * The attributes in a `struct statx` at byte `at` of `view` (a record's first 144 bytes), times
 * clamped to ±2^53 seconds: what a sender reads from its own statx buffer.
 */
export function statOfStatx(view: DataView, at: number): Stat {
  return {
    ino: view.getBigUint64(at + AT.ino, true),
    mode: view.getUint16(at + AT.mode, true),
    nlink: view.getUint32(at + AT.nlink, true),
    uid: view.getUint32(at + AT.uid, true),
    gid: view.getUint32(at + AT.gid, true),
    rdevMajor: view.getUint32(at + AT.rdevMajor, true),
    rdevMinor: view.getUint32(at + AT.rdevMinor, true),
    devMajor: view.getUint32(at + AT.devMajor, true),
    devMinor: view.getUint32(at + AT.devMinor, true),
    size: view.getBigUint64(at + AT.size, true),
    blocks: view.getBigUint64(at + AT.blocks, true),
    blksize: view.getUint32(at + AT.blksize, true),
    atimeSec: seconds(view, at + AT.atime),
    atimeNsec: view.getUint32(at + AT.atime + 8, true),
    mtimeSec: seconds(view, at + AT.mtime),
    mtimeNsec: view.getUint32(at + AT.mtime + 8, true),
    ctimeSec: seconds(view, at + AT.ctime),
    ctimeNsec: view.getUint32(at + AT.ctime + 8, true),
  };
}

/** `stx_mode` of the `struct statx` at byte `at` of `view`. */
export function statxMode(view: DataView, at = 0): number {
  return view.getUint16(at + AT.mode, true);
}

/** `stx_ino` of the `struct statx` at byte `at` of `view`. */
export function statxIno(view: DataView, at = 0): bigint {
  return view.getBigUint64(at + AT.ino, true);
}

/** `stx_size` of the `struct statx` at byte `at` of `view`. */
export function statxSize(view: DataView, at = 0): bigint {
  return view.getBigUint64(at + AT.size, true);
}

/** `stx_uid` of the `struct statx` at byte `at` of `view`. */
export function statxUid(view: DataView, at = 0): number {
  return view.getUint32(at + AT.uid, true);
}

/** `stx_gid` of the `struct statx` at byte `at` of `view`. */
export function statxGid(view: DataView, at = 0): number {
  return view.getUint32(at + AT.gid, true);
}

/** `stx_nlink` of the `struct statx` at byte `at` of `view`. */
export function statxNlink(view: DataView, at = 0): number {
  return view.getUint32(at + AT.nlink, true);
}

/** `stx_blocks` (512-byte units) of the `struct statx` at byte `at` of `view`. */
export function statxBlocks(view: DataView, at = 0): bigint {
  return view.getBigUint64(at + AT.blocks, true);
}

/**
 * The attributes of the record at byte `at` of `view` (which must hold it whole): what a receiver
 * reads. A time beyond ±2^53 seconds makes it invalid.
 */
export function statOfRecord(view: DataView, at: number): Stat | Invalid {
  if (
    !inRange(view, at + AT.atime) || !inRange(view, at + AT.mtime) ||
    !inRange(view, at + AT.ctime)
  ) {
    return INVALID;
  }
  const stat = statOfStatx(view, at);
  const flags = view.getUint8(at + AT.flags);
  if (flags & RecordFlag.XATTRS_KNOWN) stat.hasXattrs = (flags & RecordFlag.XATTRS) !== 0;
  return stat;
}

function xattrFlags(xattrs: boolean | undefined): number {
  return xattrs === undefined ? 0 : RecordFlag.XATTRS_KNOWN | (xattrs ? RecordFlag.XATTRS : 0);
}

/**
 * Builds a listing's records (the satellite's side): one growing buffer, no object per entry.
 * Indexes are those of the names the caller keeps beside it.
 */
export class RecordWriter {
  #bytes = new Uint8Array(RECORD_BYTES * 64);
  #view = new DataView(this.#bytes.buffer);
  #count = 0;

  /** Records written. */
  get count(): number {
    return this.#count;
  }

  #grow(): void {
    const bigger = new Uint8Array(this.#bytes.length * 2);
    bigger.set(this.#bytes);
    this.#bytes = bigger;
    this.#view = new DataView(bigger.buffer);
  }

  /**
   * Appends an entry. `statx`: statx's buffer right after a successful call for it, or undefined
   * when the entry has no attributes; `xattrs`: whether it has extended attributes, if known.
   */
  add(ino: bigint, type: number, cookie: bigint, statx?: Uint8Array, xattrs?: boolean): void {
    const rec = this.#begin(statx);
    if (statx === undefined) this.#view.setBigUint64(rec + AT.ino, ino, true);
    this.#view.setBigUint64(rec + AT.cookie, cookie, true);
    this.#end(rec, type, statx, xattrs);
  }

  /**
   * Appends the entry of the `struct linux_dirent64` at byte `at` of `dirents` (getdents64's
   * output), as `add` does, copying its inode number and cookie without converting them.
   */
  addDirent(dirents: DataView, at: number, statx?: Uint8Array, xattrs?: boolean): void {
    const rec = this.#begin(statx);
    const v = this.#view;
    if (statx === undefined) {
      v.setUint32(rec + AT.ino, dirents.getUint32(at + DIRENT64.ino, true), true);
      v.setUint32(rec + AT.ino + 4, dirents.getUint32(at + DIRENT64.ino + 4, true), true);
    }
    v.setUint32(rec + AT.cookie, dirents.getUint32(at + DIRENT64.off, true), true);
    v.setUint32(rec + AT.cookie + 4, dirents.getUint32(at + DIRENT64.off + 4, true), true);
    this.#end(rec, dirents.getUint8(at + DIRENT64.type), statx, xattrs);
  }

  /** Opens the next record, statx's part copied (or zeroed); returns its byte offset. */
  #begin(statx: Uint8Array | undefined): number {
    if ((this.#count + 1) * RECORD_BYTES > this.#bytes.length) this.#grow();
    const rec = this.#count++ * RECORD_BYTES;
    if (statx !== undefined) this.#bytes.set(statx.subarray(0, STATX_RECORD_BYTES), rec);
    else this.#bytes.fill(0, rec, rec + STATX_RECORD_BYTES);
    return rec;
  }

  /** Closes the record at `rec`: its type, flags and padding. */
  #end(rec: number, type: number, statx: Uint8Array | undefined, xattrs?: boolean): void {
    this.#view.setUint8(rec + AT.type, type);
    this.#view.setUint8(
      rec + AT.flags,
      statx === undefined ? 0 : RecordFlag.STAT | xattrFlags(xattrs),
    );
    this.#bytes.fill(0, rec + AT.flags + 1, rec + RECORD_BYTES);
  }

  /** Whether record `i` has attributes. */
  hasStat(i: number): boolean {
    return (this.#view.getUint8(i * RECORD_BYTES + AT.flags) & RecordFlag.STAT) !== 0;
  }

  /** The `d_type` of record `i`. */
  type(i: number): number {
    return this.#view.getUint8(i * RECORD_BYTES + AT.type);
  }

  /** Whether record `i` is on device (major, minor). */
  onDevice(i: number, major: number, minor: number): boolean {
    const at = i * RECORD_BYTES;
    return this.#view.getUint32(at + AT.devMajor, true) === major &&
      this.#view.getUint32(at + AT.devMinor, true) === minor;
  }

  /** The records written so far (a view: valid until the next `add`). */
  bytes(): Uint8Array {
    return this.#bytes.subarray(0, this.#count * RECORD_BYTES);
  }
}

/** The mode of the record at byte `at` of `view`; undefined when it has no attributes. */
export function recordMode(view: DataView, at: number): number | undefined {
  return view.getUint8(at + AT.flags) & RecordFlag.STAT ? statxMode(view, at) : undefined;
}

/** Writes `stat` into the record at byte `at` of `view` (its cookie and type kept). */
export function writeStat(view: DataView, at: number, stat: Stat): void {
  const flags = view.getUint8(at + AT.flags) & ~(RecordFlag.XATTRS_KNOWN | RecordFlag.XATTRS);
  view.setUint32(at + AT.blksize, stat.blksize, true);
  view.setUint32(at + AT.nlink, stat.nlink, true);
  view.setUint32(at + AT.uid, stat.uid, true);
  view.setUint32(at + AT.gid, stat.gid, true);
  view.setUint16(at + AT.mode, stat.mode, true);
  view.setBigUint64(at + AT.ino, stat.ino, true);
  view.setBigUint64(at + AT.size, stat.size, true);
  view.setBigUint64(at + AT.blocks, stat.blocks, true);
  for (
    const [off, sec, nsec] of [
      [AT.atime, stat.atimeSec, stat.atimeNsec],
      [AT.ctime, stat.ctimeSec, stat.ctimeNsec],
      [AT.mtime, stat.mtimeSec, stat.mtimeNsec],
    ] as const
  ) {
    view.setBigInt64(at + off, BigInt(sec), true);
    view.setUint32(at + off + 8, nsec, true);
  }
  view.setUint32(at + AT.rdevMajor, stat.rdevMajor, true);
  view.setUint32(at + AT.rdevMinor, stat.rdevMinor, true);
  view.setUint32(at + AT.devMajor, stat.devMajor, true);
  view.setUint32(at + AT.devMinor, stat.devMinor, true);
  view.setUint8(at + AT.flags, flags | RecordFlag.STAT | xattrFlags(stat.hasXattrs));
}

/**
 * One Stat (of lstat, create, setattr…): sent as the satellite has it, encoded as a record of
 * its own (cookie and type zero), parsed back into an object.
 */
export const statRecord: Schema<Stat> = {
  describe: "stat record",
  parse: (v) => {
    if (!(v instanceof Uint8Array) || v.length !== RECORD_BYTES) return INVALID;
    const view = new DataView(v.buffer, v.byteOffset, RECORD_BYTES);
    return view.getUint8(AT.flags) & RecordFlag.STAT ? statOfRecord(view, 0) : INVALID;
  },
  encode: (stat) => {
    const bytes = new Uint8Array(RECORD_BYTES);
    writeStat(new DataView(bytes.buffer), 0, stat);
    return bytes;
  },
};

/**
 * A listing of at most `maxEntries`: sent as an {@link EntryList}, parsed into entry objects.
 * With `walk`, entries carry their symlink targets.
 */
export function entryList(maxEntries: number): Schema<DirEntry[], EntryList>;
export function entryList(maxEntries: number, walk: true): Schema<WalkEntry[], EntryList>;
export function entryList(maxEntries: number, walk = false): Schema<WalkEntry[], EntryList> {
  return {
    describe: walk ? "walk entries" : "entries",
    parse: (v) => {
      if (typeof v !== "object" || v === null) return INVALID;
      const { names, records, targets } = v as Record<string, unknown>;
      if (!Array.isArray(names) || names.length > maxEntries) return INVALID;
      if (!(records instanceof Uint8Array) || records.length !== names.length * RECORD_BYTES) {
        return INVALID;
      }
      const withTargets = walk && targets !== undefined && targets !== null;
      if (withTargets && (!Array.isArray(targets) || targets.length !== names.length)) {
        return INVALID;
      }
      const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
      const out: WalkEntry[] = new Array(names.length);
      for (let i = 0; i < names.length; i++) {
        const entryName = name.parse(names[i]);
        if (entryName === INVALID) return INVALID;
        const at = i * RECORD_BYTES;
        let entry: WalkEntry;
        if (view.getUint8(at + AT.flags) & RecordFlag.STAT) {
          const stat = statOfRecord(view, at);
          if (stat === INVALID) return INVALID;
          const type = view.getUint8(at + AT.type);
          const offset = view.getBigUint64(at + AT.cookie, true);
          entry = { name: entryName, ino: stat.ino, type, offset, stat };
        } else {
          entry = {
            name: entryName,
            ino: view.getBigUint64(at + AT.ino, true),
            type: view.getUint8(at + AT.type),
            offset: view.getBigUint64(at + AT.cookie, true),
          };
        }
        if (withTargets) {
          const t = (targets as unknown[])[i];
          if (t !== null && t !== undefined) {
            const target = name.parse(t);
            if (target === INVALID) return INVALID;
            entry.target = target;
          }
        }
        out[i] = entry;
      }
      return out;
    },
  };
}
