/**
 * dockerfuse's FUSE layer: the kernel protocol over /dev/fuse in TypeScript (no libfuse).
 *
 * - `mount(fs, mountpoint, options)` mounts and serves a `FileSystem` (filesystem.ts).
 * - `inspectMountpoint`, `recoverStaleMount`, `unmount` for the CLI's mountpoint handling.
 * - `Errno` constants (errno.ts) are what operations return on failure.
 * - Linux constants implementations need (S_IF*, O_*, RENAME_*, XATTR_*, SEEK_*; defined in
 *   src/linux) and the raw ABI as `abi`.
 *
 * @module
 */

export * from "./errno.ts";
export type * from "./filesystem.ts";
export { Absent } from "./filesystem.ts";
export type * from "./options.ts";
export { mount, type PreparedMount, prepareMount } from "./mount.ts";
export {
  abortConnection,
  checkMountpoint,
  inspectMountpoint,
  type MountpointState,
  recoverStaleMount,
  unmount,
} from "./mountpoint.ts";
export { Session, type SessionOptions } from "./session.ts";
export type { Device } from "./device.ts";
export { warmUp, type WarmUpPace, type WarmUpStats } from "./warm_up.ts";
export * as abi from "./abi.ts";
