/**
 * Protocol paths as the satellite takes them apart: components checked one by one, and runs of
 * components short enough for one kernel call.
 *
 * A protocol path may be longer than PATH_MAX (up to MAX_PATH_BYTES: a deep working directory
 * in the kernel reaches such paths through FUSE), but no single openat/openat2 takes more than
 * PATH_MAX bytes. The satellite therefore opens a long parent one run at a time, each run
 * relative to the O_PATH descriptor of the previous one, with the same flags and resolve rules
 * as a short path: beneath the directory it starts from, never through a symlink.
 *
 * @module
 */

import { MAX_PATH_BYTES, type PathArg } from "../src/protocol/mod.ts";
import { NAME_MAX, PATH_MAX } from "../src/linux/mod.ts";

const encoder = new TextEncoder();

/** A protocol path and the node handle it is relative to (absent: the root). */
export interface Where {
  readonly at?: number;
  readonly path: PathArg;
}

function bytesOf(path: PathArg): Uint8Array {
  return typeof path === "string" ? encoder.encode(path) : path;
}

/** True for the names "." and "..". */
export function isDotName(name: Uint8Array): boolean {
  return name.length <= 2 && name[0] === 0x2e &&
    (name.length === 1 || name[1] === 0x2e);
}

/**
 * Splits a protocol path into NUL-free components; undefined when it is not allowed (`..`, `.`,
 * empty or absolute components, NUL, a component past NAME_MAX, the whole past MAX_PATH_BYTES).
 */
export function splitPath(path: PathArg): Uint8Array[] | undefined {
  const bytes = bytesOf(path);
  if (bytes.length === 0) return [];
  if (bytes.length > MAX_PATH_BYTES) return undefined;
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x2f) {
      const part = bytes.subarray(start, i);
      if (
        part.length === 0 || part.length > NAME_MAX || isDotName(part)
      ) return undefined;
      parts.push(part);
      start = i + 1;
    } else if (bytes[i] === 0) {
      return undefined;
    }
  }
  return parts;
}

/** True when a path is refused for its length (past MAX_PATH_BYTES, or a name past NAME_MAX). */
export function tooLong(path: PathArg): boolean {
  const bytes = bytesOf(path);
  if (bytes.length > MAX_PATH_BYTES) return true;
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x2f) {
      if (i - start > NAME_MAX) return true;
      start = i + 1;
    }
  }
  return false;
}

/** Components joined with "/" and NUL-terminated. */
export function joinBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length + 1;
  const out = new Uint8Array(n); // last separator becomes the NUL terminator
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
    out[at++] = 0x2f;
  }
  out[n - 1] = 0;
  return out;
}

/**
 * Groups components (each at most NAME_MAX bytes) into consecutive runs whose joined,
 * NUL-terminated form takes at most `limit` bytes (PATH_MAX: what one openat2 accepts), each
 * run as long as it can be. Every run holds at least one component.
 */
export function pathRuns(
  parts: readonly Uint8Array[],
  limit: number = PATH_MAX,
): Uint8Array[][] {
  const runs: Uint8Array[][] = [];
  let run: Uint8Array[] = [];
  let size = 0; // bytes of `run` joined, with its NUL
  for (const part of parts) {
    if (run.length > 0 && size + part.length + 1 > limit) {
      runs.push(run);
      run = [];
      size = 0;
    }
    run.push(part);
    size += part.length + 1;
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** A NUL-terminated copy of one component. */
export function withNul(part: Uint8Array): Uint8Array {
  const out = new Uint8Array(part.length + 1);
  out.set(part);
  return out;
}
