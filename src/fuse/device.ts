/**
 * The /dev/fuse file descriptor as the request loop sees it.
 *
 * Reads run on a worker thread (`nonblocking` FFI) so the JS thread never blocks; since errno
 * is lost with those, a failed read is diagnosed with a synchronous, non-waiting poll():
 * POLLERR/POLLNVAL means the connection is gone (ENODEV), anything else is a transient
 * failure to retry. Replies are written synchronously (the kernel copies them and returns at
 * once), so errno is readable for them.
 *
 * @module
 */

import { errno, libc, POLLERR, POLLIN, POLLNVAL, pollOne } from "./libc.ts";

const ENODEV = 19;
const EINTR = 4;

/** Where requests come from and replies go (the kernel, or a test double). */
export interface Device {
  /** Reads one request into `buffer`; the byte count, or -errno (-ENODEV: session over). */
  read(buffer: Uint8Array<ArrayBuffer>): Promise<number>;
  /** Writes one reply made of `parts` (`total` bytes); 0 or a positive errno. */
  write(parts: Uint8Array[], total: number): number;
  /** Releases the device (after the loop ended). */
  close(): void;
}

/** A /dev/fuse descriptor. */
export class FuseDevice implements Device {
  readonly fd: number;
  #closed = false;
  #iov = new BigUint64Array(16);

  constructor(fd: number) {
    this.fd = fd;
  }

  async read(buffer: Uint8Array<ArrayBuffer>): Promise<number> {
    if (this.#closed) return -ENODEV;
    const n = Number(await libc().readAsync(this.fd, buffer, BigInt(buffer.length)));
    if (n >= 0) return n;
    if (this.#closed) return -ENODEV;
    const revents = pollOne(this.fd, POLLIN, 0);
    if (revents < 0 || (revents & (POLLERR | POLLNVAL)) !== 0) return -ENODEV;
    return -EINTR;
  }

  write(parts: Uint8Array[], total: number): number {
    if (this.#closed) return ENODEV;
    const c = libc();
    let n: number;
    if (parts.length === 1) {
      n = Number(c.write(this.fd, parts[0] as Uint8Array<ArrayBuffer>, BigInt(total)));
    } else {
      if (parts.length > this.#iov.length / 2) this.#iov = new BigUint64Array(parts.length * 2);
      const iov = this.#iov;
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i] as Uint8Array<ArrayBuffer>;
        iov[2 * i] = p.length === 0
          ? 0n
          : BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(p)));
        iov[2 * i + 1] = BigInt(p.length);
      }
      n = Number(c.writev(this.fd, new Uint8Array(iov.buffer), parts.length));
    }
    if (n < 0) return errno() || ENODEV;
    return 0;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.fd);
  }
}
