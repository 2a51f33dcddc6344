/**
 * Errno names as they cross the wire, and their Linux numbers.
 *
 * The satellite reports failures by name (`"ENOENT"`), never by number, so a host and a
 * container with different numberings agree. The numbers here are Linux's asm-generic values,
 * shared by x86_64 and aarch64.
 *
 * @module
 */

import { ERRNO, type ErrnoName } from "../linux/mod.ts";

/** Linux errno numbers by name (the wire carries the names). */
export const ERRNO_NUMBERS: typeof ERRNO = ERRNO;
export type { ErrnoName };

const NAMES_BY_NUMBER: ReadonlyMap<number, ErrnoName> = new Map(
  (Object.entries(ERRNO_NUMBERS) as [ErrnoName, number][]).map(([name, n]) => [n, name]),
);

/** True when `name` is an errno name of the table. */
export function isErrnoName(name: unknown): name is ErrnoName {
  return typeof name === "string" && Object.hasOwn(ERRNO_NUMBERS, name);
}

/** The Linux number for a wire name; EIO (5) for names the table does not know. */
export function errnoNumber(name: string): number {
  return isErrnoName(name) ? ERRNO_NUMBERS[name] : ERRNO_NUMBERS.EIO;
}

/** The wire name for a Linux errno number; "EIO" for numbers the table does not know. */
export function errnoName(errno: number): ErrnoName {
  return NAMES_BY_NUMBER.get(errno) ?? "EIO";
}
