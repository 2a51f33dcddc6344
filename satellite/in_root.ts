/**
 * Opens the served root inside another root (`--root-in BASE`, the sidecar's `/proc/1/root`):
 * `..` and symlinks in the root path, absolute ones included, resolve as if BASE were "/", so
 * they stay in the target container's filesystem and never reach the helper's own.
 *
 * openat2(RESOLVE_IN_ROOT) does it in the kernel; where openat2 is refused (old kernel, seccomp),
 * the path is resolved here one component at a time with readlinkat, to the same effect.
 *
 * @module
 */

import { AT_FDCWD, ERRNO, RESOLVE_IN_ROOT } from "../src/linux/mod.ts";
import { OpenFlags, openFlagsFromWire } from "../src/protocol/mod.ts";
import { cString, type Libc, num } from "./libc.ts";

const { ENOSYS, EPERM, EINVAL, ELOOP } = ERRNO;
/** Like the kernel's limit on symlinks followed in one lookup. */
const MAX_LINKS = 40;

/** The root's O_PATH fd, or a negative errno. `walk`: resolve here even where openat2 works. */
export function openRootIn(libc: Libc, base: string, root: string, walk = false): number {
  // aarch64 numbers O_DIRECTORY and O_NOFOLLOW differently: the protocol's table translates.
  const O_PATH = openFlagsFromWire(OpenFlags.O_PATH, libc.arch);
  const O_DIRECTORY = openFlagsFromWire(OpenFlags.O_DIRECTORY, libc.arch);
  const O_CLOEXEC = openFlagsFromWire(OpenFlags.O_CLOEXEC, libc.arch);
  const O_NOFOLLOW = openFlagsFromWire(OpenFlags.O_NOFOLLOW, libc.arch);
  const baseFd = libc.fn.openat(AT_FDCWD, cString(base)!, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
  if (baseFd < 0) return -libc.errno();
  const relative = root.replace(/^\/+/, "") || ".";
  try {
    const how = new BigUint64Array([
      BigInt(O_PATH | O_DIRECTORY | O_CLOEXEC),
      0n,
      BigInt(RESOLVE_IN_ROOT),
    ]);
    const fd = walk ? -1 : num(
      libc.fn.sys_openat2(
        libc.sys.openat2,
        baseFd,
        cString(relative)!,
        new Uint8Array(how.buffer),
        24n,
      ),
    );
    if (fd >= 0) return fd;
    const errno = walk ? ENOSYS : libc.errno();
    if (errno !== ENOSYS && errno !== EPERM) return -errno;
    const resolved = resolveInRoot(libc, baseFd, relative);
    if (typeof resolved === "number") return -resolved;
    const opened = libc.fn.openat(
      baseFd,
      cString(resolved.length === 0 ? "." : resolved.join("/"))!,
      O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
      0,
    );
    return opened < 0 ? -libc.errno() : opened;
  } finally {
    libc.fn.close(baseFd);
  }
}

/**
 * Components of `path` below the base with every symlink and `..` resolved (never above the
 * base), or an errno.
 */
function resolveInRoot(libc: Libc, baseFd: number, path: string): string[] | number {
  const queue = path.split("/");
  const resolved: string[] = [];
  const target = new Uint8Array(4097);
  let links = 0;
  while (queue.length > 0) {
    const part = queue.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const candidate = cString([...resolved, part].join("/"))!;
    const n = num(libc.fn.readlinkat(baseFd, candidate, target, BigInt(target.length - 1)));
    if (n < 0) {
      const errno = libc.errno();
      if (errno !== EINVAL) return errno; // EINVAL: not a link
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) return ELOOP;
    const link = new TextDecoder().decode(target.subarray(0, n));
    if (link.startsWith("/")) resolved.length = 0;
    queue.unshift(...link.split("/"));
  }
  return resolved;
}
