/**
 * Errno names as they cross the wire, and their Linux numbers.
 *
 * The satellite reports failures by name (`"ENOENT"`), never by number, so a host and a
 * container with different numberings agree. The numbers here are Linux's asm-generic values,
 * shared by x86_64 and aarch64.
 *
 * @module
 */

/** Linux errno numbers by name. */
export const ERRNO_NUMBERS = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  ENOTBLK: 15,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  EDOM: 33,
  ERANGE: 34,
  EDEADLK: 35,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENOMSG: 42,
  EIDRM: 43,
  ENOSTR: 60,
  ENODATA: 61,
  ETIME: 62,
  ENOSR: 63,
  ENOLINK: 67,
  EPROTO: 71,
  EBADMSG: 74,
  EOVERFLOW: 75,
  EBADFD: 77,
  EILSEQ: 84,
  EUSERS: 87,
  ENOTSOCK: 88,
  EMSGSIZE: 90,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
  ESTALE: 116,
  EUCLEAN: 117,
  EREMOTEIO: 121,
  EDQUOT: 122,
  ENOMEDIUM: 123,
  EMEDIUMTYPE: 124,
  ECANCELED: 125,
  ENOKEY: 126,
  EKEYEXPIRED: 127,
  EKEYREVOKED: 128,
  EKEYREJECTED: 129,
  EOWNERDEAD: 130,
  ENOTRECOVERABLE: 131,
  ERFKILL: 132,
  EHWPOISON: 133,
} as const;

/** An errno name known to the protocol. */
export type ErrnoName = keyof typeof ERRNO_NUMBERS;

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
