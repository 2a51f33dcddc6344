/**
 * The row lookup of the tables the session shares with the reader thread (no_xattrs.ts,
 * cached_opens.ts, cached_attrs.ts), on the session's side: rows of `stride` 64-bit words, a
 * node id then its deadline (ms) first, found by open addressing from the node id's low 32 bits
 * over `PROBES` rows. The reader-side filters probe the same way in their own shipped source.
 * Only the session writes the tables, so it reads them without atomics.
 *
 * The session reads the 64-bit words as pairs of 32-bit halves (low half first: x86_64 and
 * aarch64 are little endian) and node ids and deadlines as numbers (node ids count up from 2,
 * deadlines are ms since 1970: both far below 2^53): reading a BigInt64Array would make a
 * BigInt of every word probed, once per entry of every listing sent.
 *
 * @module
 */

/** Rows probed per node id. */
export const PROBES = 8;

const TWO_32 = 4294967296;

/** The row of `nodeId` in `halves` (the table's words as 32-bit halves), or -1. */
export function rowOf(halves: Int32Array, stride: number, nodeId: number): number {
  const mask = halves.length / (2 * stride) - 1;
  const lo = nodeId | 0;
  const hi = Math.floor(nodeId / TWO_32) | 0;
  const h = (nodeId >>> 0) & mask;
  for (let k = 0; k < PROBES; k++) {
    const i = (h + k) & mask;
    const w = 2 * stride * i;
    if (halves[w] === lo && halves[w + 1] === hi) return i;
  }
  return -1;
}

/** The first row `nodeId` may take (one whose deadline is not after `now` ms), or -1. */
export function freeRow(halves: Int32Array, stride: number, nodeId: number, now: number): number {
  const mask = halves.length / (2 * stride) - 1;
  const h = (nodeId >>> 0) & mask;
  for (let k = 0; k < PROBES; k++) {
    const i = (h + k) & mask;
    const w = 2 * stride * i + 2;
    if (halves[w + 1] * TWO_32 + (halves[w] >>> 0) <= now) return i;
  }
  return -1;
}
