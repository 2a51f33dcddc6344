/**
 * The `walk` method: subtrees listed depth first in one answer, so a client walking a tree far
 * away pays a round trip per answer rather than per directory or per symlink.
 *
 * Invariants:
 * - Each path is opened beneath the root by the caller's resolver; below it every directory is
 *   opened from its parent's descriptor with O_NOFOLLOW|O_DIRECTORY, one name at a time, so a
 *   walk never follows a symlink and never leaves the root.
 * - A directory is never descended into when it is on another device than its walk's path
 *   (mount points such as /proc), nor past `MAX_DEPTH` levels below it (descriptors held).
 * - A directory is answered whole or not at all; an answer holds at most `maxEntries` entries
 *   and about `maxBytes` bytes (both capped), so its frame fits MAX_FRAME_BYTES, and begins no
 *   directory after its first once it has worked the `maxMs` asked for.
 *
 * @module
 */

import {
  type EntryName,
  MAX_WALK_ENTRIES,
  MAX_WALK_MS,
  type ParamsOf,
  type PathArg,
  RECORD_BYTES,
  type Stat,
  type WireResultOf,
} from "../src/protocol/mod.ts";
import { DT_DIR, DT_LNK, ERRNO, PATH_MAX } from "../src/linux/mod.ts";
import { decodeName, type Listing, wireListing } from "./listing.ts";
import { type Libc, num } from "./libc.ts";

/** Most bytes one answer carries, whatever is asked (the frame limit is 1 MiB + 64 KiB). */
export const MAX_WALK_BYTES = 768 * 1024;
/** Levels below a walk's path that are descended into (each holds a descriptor). */
export const MAX_DEPTH = 48;

type WireWalkDir = WireResultOf<"walk">["dirs"][number];

/** What a walk needs of the filesystem handlers. */
export interface WalkAccess {
  readonly libc: Libc;
  /** A directory descriptor of `path` beneath the root, or -errno. */
  openPath(path: PathArg): number;
  /** A directory descriptor of `name` (NUL-terminated) in `dirfd`, never following it; -errno. */
  openChild(dirfd: number, name: Uint8Array): number;
  /** Attributes of an open descriptor (whether it has xattrs included). */
  statFd(fd: number): Stat | undefined;
  /**
   * The entries of the open directory `fd` from its start (readdir `plus`); the number of
   * entries seen (more than `limit`, before any attribute was read) when there are more than
   * `limit`; -errno when it cannot be read.
   */
  list(fd: number, limit: number): Listing | number;
  /** Called with each directory opened, before it is read (the change feed watches it). */
  beforeList(fd: number): void;
  /** The clock (ms) of the time slice; `performance.now` by default. */
  now?: () => number;
}

interface Budget {
  entries: number;
  bytes: number;
  /** The clock, and when by it no further directory is begun. */
  now: () => number;
  until: number;
  /** Set once a directory did not fit: the answer is over. */
  full: boolean;
}

function nameBytes(name: EntryName): number {
  return typeof name === "string" ? name.length * 3 : name.length;
}

function withNul(name: string | Uint8Array): Uint8Array {
  const bytes = typeof name === "string" ? new TextEncoder().encode(name) : name;
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Runs one `walk` request. */
export function walk(access: WalkAccess, p: ParamsOf<"walk">): WireResultOf<"walk"> {
  const now = access.now ?? (() => performance.now());
  const start = now();
  const budget: Budget = {
    entries: Math.min(p.maxEntries, MAX_WALK_ENTRIES),
    bytes: Math.min(p.maxBytes, MAX_WALK_BYTES),
    now,
    until: p.maxMs === undefined ? Infinity : start + Math.min(p.maxMs, MAX_WALK_MS),
    full: false,
  };
  const dirs: WireWalkDir[] = [];
  let walked = 0;
  for (const path of p.paths) {
    const fd = access.openPath(path);
    if (fd >= 0) {
      try {
        const device = access.statFd(fd);
        if (device !== undefined) walkDir(access, fd, path, device, 0, budget, dirs);
      } finally {
        access.libc.fn.close(fd);
      }
    }
    if (budget.full) break;
    walked++;
  }
  return { dirs, walked };
}

/** Lists the open directory `fd` at `path`, then its subdirectories on `device`, depth first. */
function walkDir(
  access: WalkAccess,
  fd: number,
  path: PathArg,
  device: Stat,
  depth: number,
  budget: Budget,
  out: WireWalkDir[],
): void {
  // Past its time the answer ends here (this directory is for the next one).
  if (out.length > 0 && budget.now() > budget.until) {
    budget.full = true;
    return;
  }
  access.beforeList(fd);
  const listed = access.list(fd, MAX_WALK_ENTRIES);
  if (typeof listed === "number") return; // unreadable, or larger than any answer: passed over
  // The first directory of an answer always fits (else a walk could never pass it).
  const count = listed.names.length;
  if (out.length > 0 && count > budget.entries) {
    budget.full = true;
    return;
  }
  let bytes = nameBytes(path) + 16;
  let targets: (EntryName | null)[] | undefined;
  const { names, records } = listed;
  for (let i = 0; i < count; i++) {
    bytes += nameBytes(names[i]) + RECORD_BYTES;
    if (records.type(i) === DT_LNK) {
      const target = readTarget(access.libc, fd, names[i]);
      if (target !== undefined) {
        targets ??= new Array(count).fill(null);
        targets[i] = target;
        bytes += nameBytes(target);
      }
    }
  }
  if (bytes > (out.length > 0 ? budget.bytes : MAX_WALK_BYTES)) {
    if (out.length > 0) budget.full = true;
    return;
  }
  budget.entries -= count;
  budget.bytes -= bytes;
  // Read after beforeList, so as new as a watch it added (the root's `device` may be older).
  const entries = wireListing(listed);
  if (targets !== undefined) entries.targets = targets;
  out.push({ path, self: access.statFd(fd), entries });
  if (budget.entries <= 0 || budget.bytes <= 0) {
    budget.full = true;
    return;
  }
  // Paths that are not UTF-8 are not descended into (the client names directories by text).
  if (depth >= MAX_DEPTH || typeof path !== "string") return;
  for (let i = 0; i < count; i++) {
    if (budget.full) return;
    const name = names[i];
    if (records.type(i) !== DT_DIR || !records.hasStat(i) || typeof name !== "string") continue;
    if (name === "." || name === "..") continue;
    if (!records.onDevice(i, device.devMajor, device.devMinor)) continue;
    const child = access.openChild(fd, withNul(name));
    if (child < 0) continue;
    try {
      const childPath = path === "" ? name : `${path}/${name}`;
      walkDir(access, child, childPath, device, depth + 1, budget, out);
    } finally {
      access.libc.fn.close(child);
    }
  }
}

/** One buffer for every readlink (decodeName copies what it keeps). */
const targetBuf = new Uint8Array(PATH_MAX);

function readTarget(
  libc: Libc,
  dirfd: number,
  name: string | Uint8Array,
): string | Uint8Array | undefined {
  for (;;) {
    const n = num(libc.fn.readlinkat(dirfd, withNul(name), targetBuf, BigInt(targetBuf.length)));
    if (n >= 0) return decodeName(targetBuf.subarray(0, n));
    if (libc.errno() !== ERRNO.EINTR) return undefined;
  }
}
