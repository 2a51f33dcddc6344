/**
 * The satellite's side of the direct channel (`DIRECT_SOCKET_NAME` in src/protocol/methods.ts;
 * the client's side is src/mount/direct.ts): a Unix socket in the working directory, and the
 * check that a connection knows the secret before it is served.
 *
 * @module
 */

import { AF_UNIX, ERRNO, POLLIN, SOCK_CLOEXEC, SOCK_STREAM } from "../src/linux/mod.ts";
import { DIRECT_SOCKET_NAME } from "../src/protocol/mod.ts";
import { type Libc, num } from "./libc.ts";

/** How long a connection has to send the secret before it is dropped. */
const SECRET_WAIT_MS = 2000;

/** Listens on `DIRECT_SOCKET_NAME` in the working directory: the socket, or -errno. */
export function listenHere(libc: Libc): number {
  const fd = libc.fn.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -libc.errno();
  const name = new TextEncoder().encode(DIRECT_SOCKET_NAME);
  // struct sockaddr_un: sa_family_t, then the path (NUL-terminated).
  const address = new Uint8Array(2 + name.length + 1);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(name, 2);
  if (libc.fn.bind(fd, address, address.length) < 0 || libc.fn.listen(fd, 4) < 0) {
    const errno = libc.errno();
    libc.fn.close(fd);
    return -errno;
  }
  return fd;
}

/**
 * Accepts one connection on `listener`: the connection once it sent `secret`, else -1 (it was
 * closed). Waits at most SECRET_WAIT_MS for the secret.
 */
export function acceptProven(libc: Libc, listener: number, secret: string): number {
  const fd = libc.fn.accept4(listener, null, null, SOCK_CLOEXEC);
  if (fd < 0) return -1;
  const want = new TextEncoder().encode(secret);
  const got = new Uint8Array(want.length);
  const pollFd = new Uint8Array(8);
  const view = new DataView(pollFd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, POLLIN, true);
  const deadline = Date.now() + SECRET_WAIT_MS;
  let have = 0;
  while (have < got.length) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const ready = libc.fn.poll(pollFd, 1n, left);
    if (ready < 0 && libc.errno() === ERRNO.EINTR) continue;
    if (ready <= 0) break;
    const n = num(libc.fn.read(fd, got.subarray(have), BigInt(got.length - have)));
    if (n < 0 && libc.errno() === ERRNO.EINTR) continue;
    if (n <= 0) break;
    have += n;
  }
  let same = have === want.length;
  for (let i = 0; i < want.length; i++) same = same && got[i] === want[i];
  if (same) return fd;
  libc.fn.close(fd);
  return -1;
}
