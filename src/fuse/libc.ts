/**
 * The few libc calls the FUSE layer needs, through `Deno.dlopen`.
 *
 * errno is thread-local: it is only readable (`errno()`) right after a synchronous call.
 * `writeAsync` runs on a worker thread (`nonblocking`); only its return value is meaningful.
 * (The device's reader worker binds its own read/write: it cannot share this library.)
 *
 * @module
 */

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  writeAsync: {
    name: "write",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  writev: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  __errno_location: { parameters: [], result: "pointer" },
  geteuid: { parameters: [], result: "u32" },
  getegid: { parameters: [], result: "u32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  /** syscall(SYS_io_uring_setup, entries, params) */
  syscall_setup: { name: "syscall", parameters: ["i64", "u32", "buffer"], result: "i64" },
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

let errnoView: Deno.UnsafePointerView | undefined;

/**
 * errno of the last synchronous libc call on this thread. Allocation-free after the first call:
 * a collection between the call and this read may make calls that set errno (this module's
 * state is per thread: a worker loads its own copy).
 */
export function errno(): number {
  if (errnoView === undefined) {
    const p = libc().__errno_location();
    if (p === null) return 0;
    errnoView = new Deno.UnsafePointerView(p);
  }
  return errnoView.getInt32(0);
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
