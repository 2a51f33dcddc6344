/**
 * The few libc calls the FUSE layer needs, through `Deno.dlopen`.
 *
 * errno is thread-local: it is only readable (`errno()`) right after a synchronous call.
 * The `*Async` variants run on a worker thread (`nonblocking`); only their return value is
 * meaningful.
 *
 * @module
 */

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  readAsync: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  writeAsync: {
    name: "write",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  writev: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  pollAsync: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  __errno_location: { parameters: [], result: "pointer" },
  geteuid: { parameters: [], result: "u32" },
  getegid: { parameters: [], result: "u32" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

export type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

/** Opens libc once (lazily; throws a clear error if FFI is not permitted). */
export function libc(): Libc {
  if (!lib) {
    try {
      lib = Deno.dlopen("libc.so.6", symbols);
    } catch (error) {
      throw new Error(`Cannot load libc.so.6 for FUSE: ${(error as Error).message}`);
    }
  }
  return lib.symbols;
}

/** errno of the last synchronous libc call on this thread. */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32(0);
}

/** strerror(n) text. */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** NUL-terminated UTF-8 bytes for a C string argument. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

export const O_RDWR = 0o2;
export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;

/** Synchronous poll of one fd; returns revents, or -errno. */
export function pollOne(fd: number, events: number, timeoutMs: number): number {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, events, true);
  const r = libc().poll(pfd, 1n, timeoutMs);
  if (r < 0) return -errno();
  return r === 0 ? 0 : v.getInt16(6, true);
}
