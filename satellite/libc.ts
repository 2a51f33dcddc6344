/**
 * libc through Deno's FFI. Every call is synchronous, so errno can be read right after it.
 * Calls that glibc may lack (it is the container's, possibly old) go through syscall(2) with
 * per-architecture numbers.
 *
 * @module
 */

/** The architectures the satellite runs on. */
export type Arch = "x86_64" | "aarch64";

const SYSCALLS: Record<Arch, Record<string, bigint>> = {
  x86_64: {
    statx: 332n,
    renameat2: 316n,
    getdents64: 217n,
    copy_file_range: 326n,
    mknodat: 259n,
    openat2: 437n,
    listxattrat: 465n,
    fchmodat2: 452n,
    setgroups: 116n,
  },
  aarch64: {
    statx: 291n,
    renameat2: 276n,
    getdents64: 61n,
    copy_file_range: 285n,
    mknodat: 33n,
    openat2: 437n,
    listxattrat: 465n,
    fchmodat2: 452n,
    setgroups: 159n,
  },
};

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  posix_fadvise: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  pwrite64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  lseek64: { parameters: ["i32", "i64", "i32"], result: "i64" },
  fsync: { parameters: ["i32"], result: "i32" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  ftruncate64: { parameters: ["i32", "i64"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  renameat: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  linkat: { parameters: ["i32", "buffer", "i32", "buffer", "i32"], result: "i32" },
  symlinkat: { parameters: ["buffer", "i32", "buffer"], result: "i32" },
  readlinkat: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  fchmodat: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  fchdir: { parameters: ["i32"], result: "i32" },
  fchownat: { parameters: ["i32", "buffer", "u32", "u32", "i32"], result: "i32" },
  fchown: { parameters: ["i32", "u32", "u32"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  fstatvfs: { parameters: ["i32", "buffer"], result: "i32" },
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  flistxattr: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  lremovexattr: { parameters: ["buffer", "buffer"], result: "i32" },
  fallocate64: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  dup: { parameters: ["i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  umask: { parameters: ["u32"], result: "u32" },
  geteuid: { parameters: [], result: "u32" },
  getegid: { parameters: [], result: "u32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  fgetxattr: { parameters: ["i32", "buffer", "buffer", "usize"], result: "isize" },
  fsetxattr: { parameters: ["i32", "buffer", "buffer", "usize", "i32"], result: "i32" },
  fremovexattr: { parameters: ["i32", "buffer"], result: "i32" },
  setfsuid: { parameters: ["u32"], result: "i32" },
  setfsgid: { parameters: ["u32"], result: "i32" },
  getgroups: { parameters: ["i32", "buffer"], result: "i32" },
  malloc_trim: { parameters: ["usize"], result: "i32" },
  inotify_init1: { parameters: ["i32"], result: "i32" },
  inotify_add_watch: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  inotify_rm_watch: { parameters: ["i32", "i32"], result: "i32" },
  fstatfs: { parameters: ["i32", "buffer"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  // syscall(2) aliases, one signature each (integer varargs travel in registers on both arches)
  sys_statx: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "i32", "u32", "buffer"],
    result: "i64",
  },
  sys_renameat2: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "i32", "buffer", "u32"],
    result: "i64",
  },
  sys_getdents64: { name: "syscall", parameters: ["i64", "i32", "buffer", "usize"], result: "i64" },
  sys_copy_file_range: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "i32", "buffer", "usize", "u32"],
    result: "i64",
  },
  sys_mknodat: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "u32", "u32"],
    result: "i64",
  },
  sys_openat2: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "buffer", "usize"],
    result: "i64",
  },
  sys_fchmodat2: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "u32", "i32"],
    result: "i64",
  },
  /** Per-thread setgroups (glibc's wrapper changes every thread). */
  sys_setgroups: { name: "syscall", parameters: ["i64", "i64", "buffer"], result: "i64" },
  sys_listxattrat: {
    name: "syscall",
    parameters: ["i64", "i32", "buffer", "u32", "buffer", "usize"],
    result: "i64",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** Loaded libc: `fn` holds the bindings; `errno()` reads errno after a failed call. */
export class Libc {
  readonly arch: Arch;
  readonly fn: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
  readonly sys: Record<string, bigint>;
  readonly #errno: Deno.UnsafePointerView;

  constructor(arch: Arch = hostArch()) {
    this.arch = arch;
    this.fn = lazySymbols();
    this.sys = SYSCALLS[arch];
    const location = this.fn.__errno_location();
    if (location === null) throw new Error("Cannot locate errno");
    this.#errno = new Deno.UnsafePointerView(location);
  }

  /** errno of the last failed call on this thread. */
  errno(): number {
    return this.#errno.getInt32();
  }
}

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * Binds each symbol on first use: Deno compiles a call trampoline per symbol, ~5 ms for all
 * natively but ~300 ms under qemu (arm64 containers on x86_64), so startup binds only a few.
 */
function lazySymbols(): Symbols {
  const fn = {} as Record<string, unknown>;
  const libraries: unknown[] = []; // keep every handle reachable
  for (const name of Object.keys(SYMBOLS) as (keyof typeof SYMBOLS)[]) {
    Object.defineProperty(fn, name, {
      configurable: true,
      enumerable: true,
      get: () => {
        const lib = Deno.dlopen(
          "libc.so.6",
          { [name]: SYMBOLS[name] } as Pick<typeof SYMBOLS, typeof name>,
        );
        libraries.push(lib);
        const bound = (lib.symbols as Record<string, unknown>)[name];
        Object.defineProperty(fn, name, { value: bound, enumerable: true });
        return bound;
      },
    });
  }
  return fn as Symbols;
}

/** The architecture Deno runs on, as the satellite names it. */
export function hostArch(): Arch {
  const arch = Deno.build.arch;
  if (arch !== "x86_64" && arch !== "aarch64") throw new Error(`Unsupported architecture ${arch}`);
  return arch;
}

const encoder = new TextEncoder();

/** A NUL-terminated copy of a string or byte name; undefined if it contains NUL. */
export function cString(value: string | Uint8Array): Uint8Array | undefined {
  if (typeof value === "string") {
    const out = new Uint8Array(value.length * 3 + 1);
    const { written } = encoder.encodeInto(value, out);
    if (out.subarray(0, written).includes(0)) return undefined;
    return out.subarray(0, written + 1);
  }
  if (value.includes(0)) return undefined;
  const out = new Uint8Array(value.length + 1);
  out.set(value);
  return out;
}

/** A 64-bit FFI result as a number (exact up to 2^53; the satellite's counts stay below). */
export function num(value: number | bigint): number {
  return typeof value === "bigint" ? Number(value) : value;
}

/** A 64-bit FFI result as a bigint. */
export function big(value: number | bigint): bigint {
  return typeof value === "bigint" ? value : BigInt(value);
}
