/**
 * Linux errno values as returned by filesystem operations.
 *
 * Operations return an `Errno` instead of throwing. Each constant is a singleton, so
 * `result === ENOENT` works; use `isErrno()` to test a result.
 *
 * @module
 */

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

const byCode = new Map<number, Errno>();
function def(code: number, name: string): Errno {
  const e = new Errno(code, name);
  byCode.set(code, e);
  return e;
}

export const EPERM: Errno = def(1, "EPERM");
export const ENOENT: Errno = def(2, "ENOENT");
export const EINTR: Errno = def(4, "EINTR");
export const EIO: Errno = def(5, "EIO");
export const ENXIO: Errno = def(6, "ENXIO");
export const E2BIG: Errno = def(7, "E2BIG");
export const EBADF: Errno = def(9, "EBADF");
export const EAGAIN: Errno = def(11, "EAGAIN");
export const ENOMEM: Errno = def(12, "ENOMEM");
export const EACCES: Errno = def(13, "EACCES");
export const EBUSY: Errno = def(16, "EBUSY");
export const EEXIST: Errno = def(17, "EEXIST");
export const EXDEV: Errno = def(18, "EXDEV");
export const ENODEV: Errno = def(19, "ENODEV");
export const ENOTDIR: Errno = def(20, "ENOTDIR");
export const EISDIR: Errno = def(21, "EISDIR");
export const EINVAL: Errno = def(22, "EINVAL");
export const ENFILE: Errno = def(23, "ENFILE");
export const EMFILE: Errno = def(24, "EMFILE");
export const ENOTTY: Errno = def(25, "ENOTTY");
export const ETXTBSY: Errno = def(26, "ETXTBSY");
export const EFBIG: Errno = def(27, "EFBIG");
export const ENOSPC: Errno = def(28, "ENOSPC");
export const ESPIPE: Errno = def(29, "ESPIPE");
export const EROFS: Errno = def(30, "EROFS");
export const EMLINK: Errno = def(31, "EMLINK");
export const EPIPE: Errno = def(32, "EPIPE");
export const ERANGE: Errno = def(34, "ERANGE");
export const EDEADLK: Errno = def(35, "EDEADLK");
export const ENAMETOOLONG: Errno = def(36, "ENAMETOOLONG");
export const ENOSYS: Errno = def(38, "ENOSYS");
export const ENOTEMPTY: Errno = def(39, "ENOTEMPTY");
export const ELOOP: Errno = def(40, "ELOOP");
export const ENODATA: Errno = def(61, "ENODATA");
export const EOVERFLOW: Errno = def(75, "EOVERFLOW");
export const EILSEQ: Errno = def(84, "EILSEQ");
export const EOPNOTSUPP: Errno = def(95, "EOPNOTSUPP");
export const ENOTCONN: Errno = def(107, "ENOTCONN");
export const ETIMEDOUT: Errno = def(110, "ETIMEDOUT");
export const ESTALE: Errno = def(116, "ESTALE");
export const EDQUOT: Errno = def(122, "EDQUOT");
export const ECANCELED: Errno = def(125, "ECANCELED");

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
