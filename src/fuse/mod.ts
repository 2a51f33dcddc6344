/**
 * dockerfuse's FUSE layer: the kernel protocol over /dev/fuse in TypeScript.
 *
 * - `mount(fs, mountpoint, options)` mounts and serves a `FileSystem`.
 * - `FileSystem` (see `filesystem.ts`) is the node-based interface implementations provide.
 * - `Errno` constants (see `errno.ts`) are what operations return on failure.
 *
 * @module
 */

export * from "./errno.ts";
export type * from "./filesystem.ts";
export type * from "./options.ts";
