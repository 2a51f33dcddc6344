/**
 * The satellite's event loop: blocking poll(2) over a few descriptors, each with a handler
 * called when it is readable (or hung up / in error: the handler's read then tells which).
 * The loop never yields to Deno's event loop; everything runs synchronously on this thread.
 *
 * @module
 */

import { ERRNO, POLLIN } from "../src/linux/mod.ts";
import type { Libc } from "./libc.ts";

/** Bytes of one struct pollfd: i32 fd | i16 events | i16 revents. */
const POLLFD_BYTES = 8;

interface Source {
  readonly fd: number;
  readonly onReadable: () => void;
}

/** Descriptors to wait on, with their handlers. */
export class Loop {
  readonly #libc: Libc;
  #sources: Source[] = [];
  #fds = new Uint8Array(0);
  #stopped = false;
  /** Tasks for the next moment nothing is readable, in order. */
  #idle: (() => void)[] = [];

  constructor(libc: Libc) {
    this.#libc = libc;
  }

  /** Calls `onReadable` whenever `fd` is readable. One handler per descriptor. */
  add(fd: number, onReadable: () => void): void {
    this.remove(fd);
    this.#sources = [...this.#sources, { fd, onReadable }];
    this.#rebuild();
  }

  /** Stops watching `fd` (no-op if it is not watched). */
  remove(fd: number): void {
    const before = this.#sources.length;
    this.#sources = this.#sources.filter((s) => s.fd !== fd);
    if (this.#sources.length !== before) this.#rebuild();
  }

  /**
   * Runs `fn` once, the next time `run` finds no descriptor readable (before it blocks): work
   * that must not delay an answer already asked for, done while the peer is busy elsewhere.
   */
  whenIdle(fn: () => void): void {
    this.#idle.push(fn);
  }

  /** Ends `run` after the current handler returns. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Waits and dispatches until `stop()`. With a single source and no idle task its handler is
   * called directly (its own read blocks), saving one poll per iteration. Returns an errno if
   * poll fails.
   */
  run(): number | undefined {
    while (!this.#stopped) {
      const sources = this.#sources;
      if (sources.length === 0) return undefined;
      const idle = this.#idle.length > 0;
      if (sources.length === 1 && !idle) {
        sources[0].onReadable();
        continue;
      }
      // With idle tasks, a first look that does not wait: they run only when nothing is ready.
      const n = this.#libc.fn.poll(this.#fds, BigInt(sources.length), idle ? 0 : -1);
      if (n === 0 && idle) {
        const tasks = this.#idle;
        this.#idle = [];
        for (const task of tasks) task();
        continue;
      }
      if (n < 0) {
        const errno = this.#libc.errno();
        if (errno === ERRNO.EINTR) continue;
        return errno;
      }
      const view = new DataView(this.#fds.buffer);
      for (let i = 0; i < sources.length && !this.#stopped; i++) {
        const revents = view.getInt16(i * POLLFD_BYTES + 6, true);
        if (revents === 0) continue;
        view.setInt16(i * POLLFD_BYTES + 6, 0, true);
        sources[i].onReadable();
        // A handler may have added or removed sources: the next round polls the new set.
        if (sources !== this.#sources) break;
      }
    }
    return undefined;
  }

  #rebuild(): void {
    this.#fds = new Uint8Array(this.#sources.length * POLLFD_BYTES);
    const view = new DataView(this.#fds.buffer);
    this.#sources.forEach((s, i) => {
      view.setInt32(i * POLLFD_BYTES, s.fd, true);
      view.setInt16(i * POLLFD_BYTES + 4, POLLIN, true);
    });
  }
}
