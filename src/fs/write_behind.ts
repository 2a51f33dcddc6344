/**
 * Write-behind: writes to regular files answered as soon as they are queued to the satellite.
 *
 * Invariants:
 * - A write is answered only once its frame is queued on the stream (a bulk write may first
 *   wait its turn in the client's bulk lane, see src/protocol/lane.ts). The satellite serves
 *   requests in order, so anything the kernel sends after the answer (read, getattr, flush,
 *   fsync) sees it; a flush or fsync sent behind pending writes needs no extra trip.
 * - At most `limitBytes` of early-answered writes are in flight per handle; a write past it
 *   waits for the oldest ones.
 * - A failure (or short write) of an early-answered write is kept on its handle and reported
 *   once, by the next write, flush or fsync that covers that handle, like on NFS.
 * - A failure nobody was told of when its handle is released is logged and kept for the inode:
 *   the next fsync (or flush that covers the inode) of another handle reports it. At most
 *   `lostLimit` inodes keep such an error.
 *
 * @module
 */

import { EIO, type Errno, errnoOf, type Logger } from "../fuse/mod.ts";
import type { ParamsOf, RpcCalls } from "../protocol/mod.ts";
import { BoundedMap } from "./bounded_map.ts";

/**
 * Bytes of writes through one handle the FUSE layer may answer before the filesystem sees them
 * (`Opened.writeAhead`): small writes only, a bulk write waits its turn here.
 */
export const WRITE_AHEAD_BYTES = 256 * 1024;

/** Write state of one open file handle. */
export class FileWrites {
  /** Identity of the inode (`Entry.key`). */
  readonly key: string;
  /** Writes through this handle may be answered early. */
  readonly early: boolean;
  /** Written since the last flush (a clean flush has nothing to report). */
  dirty = false;
  /** Early-answered writes not yet answered by the satellite. */
  readonly pending: Set<Promise<void>> = new Set();
  /** Bytes of `pending`. */
  pendingBytes = 0;
  /** First failure of an early-answered write, not yet reported. */
  error: Errno | undefined;

  constructor(key: string, early: boolean) {
    this.key = key;
    this.early = early;
  }
}

/** Options of {@link WriteBehind}. */
export interface WriteBehindOptions {
  /** Bytes of early-answered writes in flight per handle (default 8 MiB). */
  limitBytes?: number;
  /** Inodes keeping an error of a released handle (default 4096). */
  lostLimit?: number;
  logger: Logger;
}

/** Sends early-answered writes and keeps their errors until someone is told. */
export class WriteBehind {
  readonly #rpc: Pick<RpcCalls, "write">;
  readonly #limitBytes: number;
  readonly #logger: Logger;
  /** Inode key → failure left by a released handle. */
  readonly #lost: BoundedMap<string, Errno>;

  constructor(rpc: Pick<RpcCalls, "write">, options: WriteBehindOptions) {
    this.#rpc = rpc;
    this.#limitBytes = options.limitBytes ?? 8 << 20;
    this.#logger = options.logger;
    this.#lost = new BoundedMap(options.lostLimit ?? 4096);
  }

  /**
   * Queues a write through `file` and answers its length once queued (after waiting for older
   * writes when over the limit). The frame (a copy of `params.data`) is queued before the first
   * await: the caller may reuse the buffer when this settles. `rpc`: the connection of the
   * handle (default: the one given to the constructor).
   */
  async write(
    file: FileWrites,
    params: ParamsOf<"write">,
    rpc: Pick<RpcCalls, "write"> = this.#rpc,
  ): Promise<number> {
    const length = params.data.length;
    let held: Promise<void> | undefined;
    const sent = rpc.write(params, { onHeld: (queued) => (held = queued) });
    const done: Promise<void> = sent.then((r) => {
      file.pending.delete(done);
      file.pendingBytes -= length;
      if (file.error !== undefined) return;
      if (!r.ok) file.error = errnoOf(r.errno);
      else if (r.value !== length) file.error = EIO; // short write: the rest is lost
    });
    file.pending.add(done);
    file.pendingBytes += length;
    // Waiting in the bulk lane: answered once on the stream (or failed before that).
    if (held !== undefined) await Promise.race([held, done]);
    while (file.pendingBytes > this.#limitBytes && file.pending.size > 1) {
      await file.pending.values().next().value;
    }
    return length;
  }

  /**
   * `work` (a write answered before it could be queued: its connection is coming back) counts
   * as under way through `file` until it settles: a flush or fsync meanwhile waits for it.
   */
  track(file: FileWrites, work: Promise<unknown>): void {
    const done: Promise<void> = work.then(() => {}, () => {}).then(() => {
      file.pending.delete(done);
    });
    file.pending.add(done);
  }

  /** Waits until the early-answered writes of `files` are answered. */
  async settle(files: Iterable<FileWrites>): Promise<void> {
    for (const file of files) {
      while (file.pending.size > 0) await Promise.all([...file.pending]);
    }
  }

  /**
   * Takes the first unreported failure among `files` (of one inode), else, with `lostOf`, the
   * one a released handle of that inode left: each is reported once.
   */
  takeError(files: Iterable<FileWrites>, lostOf?: string): Errno | undefined {
    for (const file of files) {
      const error = file.error;
      if (error !== undefined) {
        file.error = undefined;
        return error;
      }
    }
    if (lostOf === undefined) return undefined;
    const lost = this.#lost.get(lostOf);
    if (lost !== undefined) this.#lost.delete(lostOf);
    return lost;
  }

  /** `file` is released: its writes settle; an unreported failure is logged and kept. */
  async release(file: FileWrites, path: string | undefined): Promise<void> {
    await this.settle([file]);
    const error = file.error;
    if (error === undefined) return;
    file.error = undefined;
    this.#lost.set(file.key, error);
    this.#logger.warn(
      `A write to '${path ?? `inode ${file.key}`}' failed after its file was closed: ${error.name}`,
    );
  }
}
