/**
 * Conversions of what the satellite answers into what the FUSE layer takes.
 *
 * @module
 */

import type { Attr } from "../fuse/mod.ts";
import { encodeDev, type Stat } from "../protocol/mod.ts";

/** Converts the satellite's Stat to FUSE attributes. */
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
export function statKey(stat: Stat): string {
  return `${stat.devMajor}:${stat.devMinor}:${stat.ino}`;
}
