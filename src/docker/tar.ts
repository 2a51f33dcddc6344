/**
 * A small in-memory tar writer (ustar, with pax headers for long paths and large sizes) for
 * uploads through the archive API, and a reader for the few small files we fetch back.
 */

import { concatBytes } from "./bytes.ts";

export interface TarEntry {
  /** relative path with "/" separators; no "..", no leading "/" */
  path: string;
  type: "directory" | "file";
  /** permission bits, e.g. 0o700 */
  mode: number;
  /** file contents (files only) */
  data?: Uint8Array;
  /** file contents read on demand instead of `data` (large files): exactly `size` bytes */
  source?: TarSource;
  /** owner; 0 (root) by default */
  uid?: number;
  gid?: number;
  /** seconds since the epoch; 0 by default so archives are reproducible */
  mtime?: number;
}

/**
 * Contents produced when the archive is sent, so a large file never sits in memory whole. A
 * chunk is only valid until the next one is asked for (sources may reuse one buffer).
 */
export interface TarSource {
  readonly length: number;
  chunks(): AsyncIterable<Uint8Array>;
  /** The host file the chunks are read from, whole (a local copy may then be the kernel's). */
  readonly file?: string;
}

/** A piece of an archive: bytes at hand, or a file's contents read when sent. */
export type TarPart = Uint8Array | TarSource;

const BLOCK = 512;
const encoder = new TextEncoder();

/**
 * Whether `path` is a clean relative path: not empty, no leading "/", no NUL, and no empty, "."
 * or ".." component (what an archive entry, a bundle file or a name placed from the host may be).
 */
export function isCleanRelativePath(path: string): boolean {
  return path !== "" && !path.startsWith("/") && !path.includes("\0") &&
    !path.split("/").some((part) => part === "" || part === "." || part === "..");
}

function checkPath(path: string): void {
  if (!isCleanRelativePath(path)) {
    throw new RangeError(`Cannot add '${path}' to a tar archive: not a clean relative path`);
  }
}

function octal(value: number, width: number): string {
  // width includes the terminating NUL
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function fitsOctal(value: number, width: number): boolean {
  return value >= 0 && Number.isSafeInteger(value) && value < 8 ** (width - 1);
}

function writeString(block: Uint8Array, offset: number, width: number, text: string): void {
  const bytes = encoder.encode(text);
  block.set(bytes.subarray(0, width), offset);
}

interface HeaderFields {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
}

function header(fields: HeaderFields): Uint8Array {
  const block = new Uint8Array(BLOCK);
  writeString(block, 0, 100, fields.name);
  writeString(block, 100, 8, octal(fields.mode & 0o7777, 8));
  writeString(block, 108, 8, octal(fitsOctal(fields.uid, 8) ? fields.uid : 0, 8));
  writeString(block, 116, 8, octal(fitsOctal(fields.gid, 8) ? fields.gid : 0, 8));
  writeString(block, 124, 12, octal(fitsOctal(fields.size, 12) ? fields.size : 0, 12));
  writeString(block, 136, 12, octal(fitsOctal(fields.mtime, 12) ? fields.mtime : 0, 12));
  block.fill(0x20, 148, 156); // checksum field counts as spaces
  writeString(block, 156, 1, fields.typeflag);
  writeString(block, 257, 6, "ustar\0");
  writeString(block, 263, 2, "00");
  writeString(block, 345, 155, fields.prefix);
  let sum = 0;
  for (const byte of block) sum += byte;
  writeString(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** Splits a path into ustar prefix/name, or undefined when it needs a pax header. */
function splitUstar(path: string): { prefix: string; name: string } | undefined {
  const bytes = encoder.encode(path);
  if (bytes.length <= 100) return { prefix: "", name: path };
  for (let i = path.length - 1; i > 0; i--) {
    if (path[i] !== "/") continue;
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (encoder.encode(prefix).length <= 155 && encoder.encode(name).length <= 100 && name) {
      return { prefix, name };
    }
  }
  return undefined;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = encoder.encode(body).length;
  let record = `${length}${body}`;
  // the length field counts itself
  while (encoder.encode(record).length !== length) {
    length = encoder.encode(record).length;
    record = `${length}${body}`;
  }
  return record;
}

function padded(data: { length: number }): number {
  return Math.ceil(data.length / BLOCK) * BLOCK;
}

/** Builds a complete tar archive. Throws RangeError for invalid entries. */
export function buildTar(entries: readonly TarEntry[]): Uint8Array {
  const parts = tarParts(entries).map((part) => {
    if (part instanceof Uint8Array) return part;
    throw new RangeError("Cannot build a tar archive in memory from a streamed entry");
  });
  return concatBytes(parts);
}

/**
 * The archive as a list of byte ranges (headers, the entries' own data arrays uncopied or their
 * sources, padding) whose concatenation is the tar file. Throws RangeError for invalid entries.
 */
export function tarParts(entries: readonly TarEntry[]): TarPart[] {
  const parts: TarPart[] = [];
  for (const entry of entries) {
    checkPath(entry.path);
    const data: TarPart = entry.type === "file"
      ? entry.source ?? entry.data ?? new Uint8Array()
      : new Uint8Array();
    const path = entry.type === "directory" ? `${entry.path}/` : entry.path;
    const uid = entry.uid ?? 0;
    const gid = entry.gid ?? 0;
    const mtime = Math.floor(entry.mtime ?? 0);
    let split = splitUstar(path);
    let pax = "";
    if (split === undefined) {
      pax += paxRecord("path", path);
      split = { prefix: "", name: encoder.encode(path).length <= 100 ? path : "pax-long-name" };
    }
    if (!fitsOctal(data.length, 12)) pax += paxRecord("size", String(data.length));
    if (!fitsOctal(uid, 8)) pax += paxRecord("uid", String(uid));
    if (!fitsOctal(gid, 8)) pax += paxRecord("gid", String(gid));
    if (pax !== "") {
      const body = encoder.encode(pax);
      parts.push(
        header({
          name: "PaxHeader",
          prefix: "",
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: body.length,
          mtime,
          typeflag: "x",
        }),
      );
      const block = new Uint8Array(padded(body));
      block.set(body);
      parts.push(block);
    }
    parts.push(header({
      ...split,
      mode: entry.mode,
      uid,
      gid,
      size: data.length,
      mtime,
      typeflag: entry.type === "directory" ? "5" : "0",
    }));
    if (data.length > 0) {
      parts.push(data);
      const rest = padded(data) - data.length;
      if (rest > 0) parts.push(new Uint8Array(rest));
    }
  }
  parts.push(new Uint8Array(2 * BLOCK));
  return parts;
}

export interface TarFile {
  path: string;
  typeflag: string;
  data: Uint8Array;
}

/**
 * Reads the regular entries of a tar archive (no pax/GNU long names needed for our use).
 * Never throws: a truncated or corrupt archive yields the entries read so far.
 */
export function readTar(archive: Uint8Array): TarFile[] {
  const files: TarFile[] = [];
  const decoder = new TextDecoder();
  let at = 0;
  while (at + BLOCK <= archive.length) {
    const block = archive.subarray(at, at + BLOCK);
    if (block.every((b) => b === 0)) break;
    const field = (offset: number, width: number): string => {
      const raw = block.subarray(offset, offset + width);
      const end = raw.indexOf(0);
      return decoder.decode(end === -1 ? raw : raw.subarray(0, end));
    };
    const size = parseInt(field(124, 12).trim() || "0", 8);
    if (!Number.isSafeInteger(size) || size < 0) break;
    const prefix = field(345, 155);
    const name = field(0, 100);
    const typeflag = field(156, 1) || "0";
    const start = at + BLOCK;
    if (start + size > archive.length) break;
    files.push({
      path: prefix ? `${prefix}/${name}` : name,
      typeflag,
      data: archive.subarray(start, start + size),
    });
    at = start + Math.ceil(size / BLOCK) * BLOCK;
  }
  return files;
}
