/**
 * Linux errno values as returned by filesystem operations.
 *
 * Operations return an `Errno` instead of throwing. Each constant is a singleton, so
 * `result === ENOENT` works; use `isErrno()` to test a result.
 *
 * @module
 */

import { ERRNO, type ErrnoName } from "../linux/mod.ts";

/** A Linux errno value (positive number) returned by a filesystem operation. */
export class Errno {
  /** The positive Linux errno number, e.g. 2 for ENOENT. */
  readonly code: number;
  /** The symbolic name, e.g. "ENOENT" ("E<n>" when not known). */
  readonly name: string;
  constructor(code: number, name?: string) {
    this.code = code;
    this.name = name ?? `E${code}`;
  }
  toString(): string {
    return this.name;
  }
}

/** One singleton per errno of the Linux table, by number. */
const byCode = new Map<number, Errno>();
for (const [name, code] of Object.entries(ERRNO)) byCode.set(code, new Errno(code, name));
function def(name: ErrnoName): Errno {
  return byCode.get(ERRNO[name])!;
}

export const EPERM: Errno = def("EPERM");
export const ENOENT: Errno = def("ENOENT");
export const EINTR: Errno = def("EINTR");
export const EIO: Errno = def("EIO");
export const ENXIO: Errno = def("ENXIO");
export const E2BIG: Errno = def("E2BIG");
export const EBADF: Errno = def("EBADF");
export const EAGAIN: Errno = def("EAGAIN");
export const ENOMEM: Errno = def("ENOMEM");
export const EACCES: Errno = def("EACCES");
export const EBUSY: Errno = def("EBUSY");
export const EEXIST: Errno = def("EEXIST");
export const EXDEV: Errno = def("EXDEV");
export const ENODEV: Errno = def("ENODEV");
export const ENOTDIR: Errno = def("ENOTDIR");
export const EISDIR: Errno = def("EISDIR");
export const EINVAL: Errno = def("EINVAL");
export const ENFILE: Errno = def("ENFILE");
export const EMFILE: Errno = def("EMFILE");
export const ENOTTY: Errno = def("ENOTTY");
export const ETXTBSY: Errno = def("ETXTBSY");
export const EFBIG: Errno = def("EFBIG");
export const ENOSPC: Errno = def("ENOSPC");
export const ESPIPE: Errno = def("ESPIPE");
export const EROFS: Errno = def("EROFS");
export const EMLINK: Errno = def("EMLINK");
export const EPIPE: Errno = def("EPIPE");
export const ERANGE: Errno = def("ERANGE");
export const EDEADLK: Errno = def("EDEADLK");
export const ENAMETOOLONG: Errno = def("ENAMETOOLONG");
export const ENOSYS: Errno = def("ENOSYS");
export const ENOTEMPTY: Errno = def("ENOTEMPTY");
export const ELOOP: Errno = def("ELOOP");
export const ENODATA: Errno = def("ENODATA");
export const EOVERFLOW: Errno = def("EOVERFLOW");
export const EILSEQ: Errno = def("EILSEQ");
export const EOPNOTSUPP: Errno = def("EOPNOTSUPP");
export const ENOTCONN: Errno = def("ENOTCONN");
export const ETIMEDOUT: Errno = def("ETIMEDOUT");
export const ESTALE: Errno = def("ESTALE");
export const EDQUOT: Errno = def("EDQUOT");
export const ECANCELED: Errno = def("ECANCELED");

/** ENOTSUP is the same number as EOPNOTSUPP on Linux. */
export const ENOTSUP: Errno = EOPNOTSUPP;
/** ENOATTR (xattr missing) is ENODATA on Linux. */
export const ENOATTR: Errno = ENODATA;

/** The Errno for a positive Linux errno number (the singleton when known). */
export function errnoOf(code: number): Errno {
  return byCode.get(code) ?? new Errno(code);
}

/** Narrows an operation result to its error case. */
export function isErrno(value: unknown): value is Errno {
  return value instanceof Errno;
}

/**
 * Maps a Deno error (e.g. `Deno.errors.NotFound`, or one carrying a `code` like "ENOENT")
 * to an Errno; unknown errors become EIO.
 */
export function errnoFromError(error: unknown): Errno {
  if (error instanceof Errno) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === "string") {
    for (const e of byCode.values()) if (e.name === code) return e;
  }
  if (error instanceof Deno.errors.NotFound) return ENOENT;
  if (error instanceof Deno.errors.PermissionDenied) return EACCES;
  if (error instanceof Deno.errors.AlreadyExists) return EEXIST;
  if (error instanceof Deno.errors.NotADirectory) return ENOTDIR;
  if (error instanceof Deno.errors.IsADirectory) return EISDIR;
  if (error instanceof Deno.errors.InvalidData) return EINVAL;
  if (error instanceof Deno.errors.TimedOut) return ETIMEDOUT;
  if (error instanceof Deno.errors.Interrupted) return EINTR;
  if (error instanceof Deno.errors.WouldBlock) return EAGAIN;
  if (error instanceof Deno.errors.NotConnected) return ENOTCONN;
  if (error instanceof Deno.errors.Busy) return EBUSY;
  if (error instanceof Deno.errors.FilesystemLoop) return ELOOP;
  if (error instanceof Deno.errors.NotSupported) return EOPNOTSUPP;
  return EIO;
}
