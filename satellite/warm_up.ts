/**
 * The satellite's JIT warm-up: a client's first walk runs the listing code (getdents64, statx
 * and the xattr probe of each entry, records, the answer's msgpack) before V8 has compiled it.
 * Right after the handshake, while nothing is asked, the same code lists `/proc` (present in
 * every container, read without side effects) a few dozen times, one listing per idle turn of
 * the loop: a request that comes waits for one listing at most.
 *
 * @module
 */

import { createPackr, encodeFrame, type EntryList, Kind } from "../src/protocol/mod.ts";

/** Listings the warm-up makes at most. */
export const WARM_UP_LISTINGS = 40;
/** What it lists. */
export const WARM_UP_DIR = "/proc";

/** What the warm-up needs of the satellite. */
export interface WarmUpAccess {
  /** Runs `fn` once the loop has nothing to answer (Loop.whenIdle). */
  whenIdle(fn: () => void): void;
  /** `path` listed as a walk lists it (SatelliteFs.listAt); undefined when it cannot be. */
  listAt(path: string): EntryList | undefined;
}

/**
 * Schedules the warm-up: up to `listings` listings of `dir`, each encoded as a walk's answer
 * would be (and dropped), one per idle turn. Stops at the first listing that fails; `done`
 * hears how many were made. (The loop runs synchronously: no promise could settle meanwhile.)
 */
export function warmUpWhenIdle(
  access: WarmUpAccess,
  done: (made: number) => void = () => {},
  listings = WARM_UP_LISTINGS,
  dir = WARM_UP_DIR,
): void {
  const packr = createPackr();
  let made = 0;
  const step = (): void => {
    const entries = made < listings ? access.listAt(dir) : undefined;
    if (entries === undefined) return done(made);
    made++;
    encodeFrame(packr, [Kind.RESULT, 0, { dirs: [{ path: dir, entries }], walked: 1 }]);
    access.whenIdle(step);
  };
  access.whenIdle(step);
}
