/**
 * dockerfuse's FUSE layer: the kernel protocol over /dev/fuse in TypeScript (no libfuse).
 *
 * - `mount(fs, mountpoint, options)` mounts and serves a `FileSystem` (filesystem.ts).
 * - `inspectMountpoint`, `recoverStaleMount`, `unmount` for the CLI's mountpoint handling.
 * - `Errno` constants (errno.ts) are what operations return on failure.
 * - Linux constants implementations need (S_IF*, O_*, RENAME_*, XATTR_*, SEEK_*) and the raw
 *   ABI as `abi`.
 *
 * @module
 */

export * from "./errno.ts";
export type * from "./filesystem.ts";
export type * from "./options.ts";
export {
  abortConnection,
  inspectMountpoint,
  mount,
  type MountpointState,
  recoverStaleMount,
  unmount,
} from "./mount.ts";
export { Session, type SessionOptions } from "./session.ts";
export type { Device } from "./device.ts";
export * as abi from "./abi.ts";
export {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  O_ACCMODE,
  O_APPEND,
  O_CREAT,
  O_DIRECT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  RENAME_WHITEOUT,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
  S_ISGID,
  S_ISUID,
  S_ISVTX,
  SEEK_DATA,
  SEEK_HOLE,
  XATTR_CREATE,
  XATTR_REPLACE,
} from "./abi.ts";
