/**
 * Checks on what the satellite answers. The satellite runs inside the container, so its answers
 * are untrusted input: a name or attribute reaches the kernel only once it passed these checks.
 *
 * @module
 */

import type { Attr } from "../fuse/mod.ts";
import {
  NAME_MAX,
  PATH_MAX,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "../linux/mod.ts";
import { encodeDev, type Stat } from "../protocol/mod.ts";

const FILE_TYPES: ReadonlySet<number> = new Set([
  S_IFREG,
  S_IFDIR,
  S_IFLNK,
  S_IFCHR,
  S_IFBLK,
  S_IFIFO,
  S_IFSOCK,
]);
const NSEC_PER_SEC = 1_000_000_000;
const MAX_EXACT = BigInt(Number.MAX_SAFE_INTEGER);
const encoder = new TextEncoder();

/** Why `stat` cannot be shown to the kernel, or undefined when it can. */
export function statProblem(stat: Stat): string | undefined {
  if (!FILE_TYPES.has(stat.mode & S_IFMT)) {
    return `unknown file type in mode 0o${stat.mode.toString(8)}`;
  }
  if (stat.size > MAX_EXACT || stat.blocks > MAX_EXACT) return `size ${stat.size} out of range`;
  if (
    stat.atimeNsec >= NSEC_PER_SEC || stat.mtimeNsec >= NSEC_PER_SEC ||
    stat.ctimeNsec >= NSEC_PER_SEC
  ) {
    return "nanoseconds out of range";
  }
  return undefined;
}

/**
 * Why a listed `name` cannot be given to the kernel, or undefined when it can: it must be a
 * non-empty UTF-8 string of at most NAME_MAX bytes without "/" or NUL ("." and ".." are
 * the listing's business).
 */
export function nameProblem(name: string | Uint8Array): string | undefined {
  if (typeof name !== "string") return "not UTF-8";
  if (name === "") return "empty";
  if (name.includes("/") || name.includes("\0")) return "contains '/' or NUL";
  // A UTF-16 unit takes 1 to 3 UTF-8 bytes: encode only when the length leaves it open.
  const long = name.length > NAME_MAX ||
    (name.length * 3 > NAME_MAX && encoder.encode(name).length > NAME_MAX);
  if (long) return `longer than ${NAME_MAX} bytes`;
  return undefined;
}

/**
 * Why a symlink `target` cannot be given to the kernel, or undefined when it can: Linux's are
 * non-empty, shorter than PATH_MAX bytes and without NUL.
 */
export function targetProblem(target: string): string | undefined {
  if (target === "") return "empty";
  if (target.includes("\0")) return "contains NUL";
  const long = target.length >= PATH_MAX ||
    (target.length * 3 >= PATH_MAX && encoder.encode(target).length >= PATH_MAX);
  if (long) return `not shorter than ${PATH_MAX} bytes`;
  return undefined;
}

/** Converts the satellite's Stat (checked with {@link statProblem}) to FUSE attributes. */
export function statToAttr(stat: Stat): Attr {
  return {
    ino: stat.ino,
    mode: stat.mode,
    nlink: stat.nlink,
    uid: stat.uid,
    gid: stat.gid,
    rdev: encodeDev(stat.rdevMajor, stat.rdevMinor),
    size: Number(stat.size),
    blocks: Number(stat.blocks),
    blksize: stat.blksize || 4096,
    atime: { sec: stat.atimeSec, nsec: stat.atimeNsec },
    mtime: { sec: stat.mtimeSec, nsec: stat.mtimeNsec },
    ctime: { sec: stat.ctimeSec, nsec: stat.ctimeNsec },
  };
}

/** Identity of an inode: inode numbers repeat across the container's filesystems. */
export { inodeKey as statKey } from "../protocol/mod.ts";
