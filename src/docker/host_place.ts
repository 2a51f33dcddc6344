/**
 * Places the satellite's files straight into a local container's filesystem through
 * `/proc/<pid>/root`, instead of streaming them (~100 MB) through the engine's archive API: the
 * engine unpacks an archive in a helper process (~180 ms of a mount here, and ~40 ms even for
 * the private directory alone), where making the directory and writing the same bytes from the
 * host takes ~40 ms. The archive API still places everything when this cannot.
 *
 * Invariants:
 * - Every name is resolved relative to a descriptor held on its parent, none following a
 *   symlink (O_NOFOLLOW at each step, from the container's root): a process in the container
 *   that swaps a link in anywhere on the way, the private directory included, makes the call
 *   fail, never sends a write onto the host's own files.
 * - Only where the container's root is the host's root (identity uid and gid maps): what is made
 *   belongs to 0:0 there as here, so no chown is ever needed; an engine that maps users is left
 *   to the archive API.
 * - Nothing is overwritten: the private directory (random name, 0700) and the bundle's
 *   directories by mkdirat, files by O_CREAT|O_EXCL; a file's mode is set on its descriptor
 *   (fchmod), a directory's checked after mkdirat (the umask).
 * - A failure is a reason, never an exception; what was made is removed, and the caller uploads
 *   through the API instead.
 *
 * @module
 */

import { isCleanRelativePath, type TarEntry } from "./tar.ts";
import { errorMessage } from "./errors.ts";
import { openFlagsFromWire } from "../protocol/methods.ts";
import {
  AT_EMPTY_PATH,
  AT_REMOVEDIR,
  O_CLOEXEC,
  O_CREAT,
  O_DIRECTORY,
  O_EXCL,
  O_NOFOLLOW,
  O_PATH,
  O_RDONLY,
  O_WRONLY,
} from "../linux/mod.ts";

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  openat: { parameters: ["i32", "buffer", "i32", "u32"], result: "i32" },
  mkdirat: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  unlinkat: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  sendfile: { parameters: ["i32", "i32", "pointer", "usize"], result: "isize" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];

/** statx's fields used here: STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID. */
const STATX_MASK = 0x1 | 0x2 | 0x8 | 0x10;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;

/** Where the host sees path `path` (absolute, inside the container) of process `pid`'s root. */
export function hostPathOf(pid: number, path: string): string {
  return `/proc/${pid}/root${path === "/" ? "" : path}`;
}

/** What {@link placeOnHost} places, and where. */
export interface Placement {
  /** The host's process id of the container's first process. */
  pid: number;
  /** An absolute directory inside the container… */
  parent: string;
  /** …where directory `name` (0700) is made… */
  name: string;
  /** …and these written into it (paths relative to it, each directory before what it holds). */
  entries: readonly TarEntry[];
  onProgress?: (sent: number, total: number) => void;
}

/**
 * Places `p`. Undefined once all is written, else why not; what was made is then removed (best
 * effort).
 */
export async function placeOnHost(p: Placement): Promise<string | undefined> {
  const { pid, parent, name } = p;
  if (!Number.isSafeInteger(pid) || pid <= 0) return "no process id for the container";
  if (!parent.startsWith("/") || (parent !== "/" && !isCleanRelativePath(parent.slice(1)))) {
    return `not a place: '${parent}'`;
  }
  if (!isCleanRelativePath(name) || name.includes("/")) return `not a name: '${name}'`;
  for (const map of ["uid_map", "gid_map"]) {
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${pid}/${map}`);
    } catch (error) {
      return `cannot read the container's ${map}: ${errorMessage(error)}`;
    }
    if (text.trim().split(/\s+/).join(" ") !== "0 0 4294967295") {
      return `the container's users are mapped (${map})`;
    }
  }
  let lib: Deno.DynamicLibrary<typeof symbols>;
  try {
    lib = Deno.dlopen("libc.so.6", symbols);
  } catch (error) {
    return `no libc: ${errorMessage(error)}`;
  }
  const placer = new Placer(lib.symbols);
  try {
    return await placer.place(p);
  } catch (error) {
    return errorMessage(error);
  } finally {
    placer.close();
    lib.close();
  }
}

/** Open flags in the host's numbering (the constants are x86_64's, as the protocol's). */
function hostFlags(flags: number): number {
  return openFlagsFromWire(flags, Deno.build.arch);
}

/** Bytes per sendfile call (progress is reported between calls). */
const COPY_CHUNK = 8 * 1024 * 1024;

const DIR_FLAGS = hostFlags(O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
const FILE_FLAGS = hostFlags(O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC);

/** One placement: the descriptors it holds and what it made, undone unless it completes. */
class Placer {
  readonly #c: Libc;
  readonly #fds: number[] = [];
  /** [parent descriptor, name, is a directory], in the order made. */
  readonly #made: [number, string, boolean][] = [];
  readonly #statx = new Uint8Array(256);

  constructor(c: Libc) {
    this.#c = c;
  }

  async place(
    { pid, parent, name, entries, onProgress }: Placement,
  ): Promise<string | undefined> {
    // The container's root, through the magic link (the one step that follows).
    let at = this.#held(
      this.#c.open(cstr(hostPathOf(pid, "/")), hostFlags(O_PATH | O_DIRECTORY | O_CLOEXEC), 0),
    );
    for (const part of parent.split("/").filter((p) => p !== "")) at = this.#openDir(at, part);
    this.#ok(this.#c.mkdirat(at, cstr(name), 0o700), `mkdir '${name}'`);
    this.#made.push([at, name, true]);
    at = this.#openDir(at, name);
    const why = this.#check(at, name, S_IFDIR, 0o700);
    if (why !== undefined) return why;
    const dirs = new Map<string, number>([["", at]]);
    const total = entries.reduce((n, e) => n + (e.data?.length ?? e.source?.length ?? 0), 0);
    let sent = 0;
    for (const entry of entries) {
      if (!isCleanRelativePath(entry.path)) return `bad entry '${entry.path}'`;
      if ((entry.uid ?? 0) !== 0 || (entry.gid ?? 0) !== 0) return "entries not owned by root";
      const slash = entry.path.lastIndexOf("/");
      const into = dirs.get(slash < 0 ? "" : entry.path.slice(0, slash));
      if (into === undefined) return `'${entry.path}' comes before its directory`;
      const base = entry.path.slice(slash + 1);
      if (entry.type === "directory") {
        this.#ok(this.#c.mkdirat(into, cstr(base), entry.mode), `mkdir '${entry.path}'`);
        this.#made.push([into, base, true]);
        const fd = this.#openDir(into, base);
        // No fchmod on an O_PATH descriptor: the umask must have left the mode as asked.
        const why = this.#check(fd, entry.path, S_IFDIR, entry.mode);
        if (why !== undefined) return why;
        dirs.set(entry.path, fd);
        continue;
      }
      const fd = this.#c.openat(into, cstr(base), FILE_FLAGS, 0o600);
      this.#ok(fd, `create '${entry.path}'`);
      this.#made.push([into, base, false]);
      try {
        if (entry.data !== undefined) {
          this.#writeAll(fd, entry.data, entry.path);
          onProgress?.(sent += entry.data.length, total);
        } else if (entry.source?.file !== undefined) {
          const length = this.#copyFile(fd, entry.source.file, entry.source.length, (n) => {
            onProgress?.(sent += n, total);
          });
          if (length !== entry.source.length) {
            return `'${entry.path}' gave ${length} bytes, not ${entry.source.length}`;
          }
        } else if (entry.source !== undefined) {
          let length = 0;
          // Each chunk is written before the next is asked for (it is valid only until then).
          for await (const chunk of entry.source.chunks()) {
            this.#writeAll(fd, chunk, entry.path);
            length += chunk.length;
            onProgress?.(sent += chunk.length, total);
          }
          if (length !== entry.source.length) {
            return `'${entry.path}' gave ${length} bytes, not ${entry.source.length}`;
          }
        }
        this.#ok(this.#c.fchmod(fd, entry.mode), `chmod '${entry.path}'`);
        const why = this.#check(fd, entry.path, S_IFREG, entry.mode);
        if (why !== undefined) return why;
      } finally {
        this.#c.close(fd);
      }
    }
    this.#made.length = 0; // complete: kept
    return undefined;
  }

  /** Removes what an incomplete placement made (deepest first), closes what it holds. */
  close(): void {
    for (const [parent, name, isDir] of this.#made.reverse()) {
      this.#c.unlinkat(parent, cstr(name), isDir ? AT_REMOVEDIR : 0);
    }
    for (const fd of this.#fds) this.#c.close(fd);
  }

  #openDir(parent: number, name: string): number {
    return this.#held(this.#c.openat(parent, cstr(name), DIR_FLAGS, 0), `open '${name}'`);
  }

  #held(fd: number, what = "open the container's root"): number {
    this.#ok(fd, what);
    this.#fds.push(fd);
    return fd;
  }

  /** Why `fd` is not of `type` with mode `mode`, owned by 0:0 (undefined: it is). */
  #check(fd: number, what: string, type: number, mode: number): string | undefined {
    const b = this.#statx;
    this.#ok(this.#c.statx(fd, cstr(""), AT_EMPTY_PATH, STATX_MASK, b), `stat '${what}'`);
    const v = new DataView(b.buffer);
    const [uid, gid, m] = [v.getUint32(20, true), v.getUint32(24, true), v.getUint16(28, true)];
    if ((m & S_IFMT) !== type || (m & 0o7777) !== mode || uid !== 0 || gid !== 0) {
      return `'${what}' is not as asked (mode ${mode.toString(8)}, owner 0:0)`;
    }
    return undefined;
  }

  /**
   * Copies host file `path` into `fd` in the kernel (sendfile: no pass through this process's
   * memory; 15-18 ms for the 96 MB runtime here, against ~60 ms read and written in chunks).
   * Copies at most `length` bytes and answers how many (fewer: the file is shorter).
   */
  #copyFile(fd: number, path: string, length: number, progress: (n: number) => void): number {
    const src = this.#c.open(cstr(path), hostFlags(O_RDONLY | O_CLOEXEC), 0);
    this.#ok(src, `open '${path}'`);
    try {
      let done = 0;
      while (done < length) {
        const n = Number(
          this.#c.sendfile(fd, src, null, BigInt(Math.min(length - done, COPY_CHUNK))),
        );
        this.#ok(n, `copy '${path}'`);
        if (n === 0) break;
        done += n;
        progress(n);
      }
      return done;
    } finally {
      this.#c.close(src);
    }
  }

  #writeAll(fd: number, data: Uint8Array, what: string): void {
    for (let off = 0; off < data.length;) {
      const n = Number(
        this.#c.write(fd, data.subarray(off) as Uint8Array<ArrayBuffer>, BigInt(data.length - off)),
      );
      this.#ok(n, `write '${what}'`);
      off += n;
    }
  }

  /** Throws with errno's text when `r` < 0. */
  #ok(r: number, what: string): void {
    if (r >= 0) return;
    const p = this.#c.__errno_location();
    const code = p === null ? 0 : new Deno.UnsafePointerView(p).getInt32(0);
    const text = this.#c.strerror(code);
    throw new Error(
      `${what}: ${text === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(text)}`,
    );
  }
}

function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}
