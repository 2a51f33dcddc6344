/**
 * The row lookup of the tables the session shares with the reader thread (no_xattrs.ts,
 * cached_opens.ts, cached_attrs.ts), on the session's side: rows of `stride` 64-bit words, a
 * node id then its deadline (ms) first, found by open addressing from the node id's low 32 bits
 * over `PROBES` rows. The reader-side filters probe the same way in their own shipped source.
 * Only the session writes the tables, so it reads them without atomics.
 *
 * @module
 */

/** Rows probed per node id. */
export const PROBES = 8;

/** The row of `node` in `table`, or -1. */
export function rowOf(table: BigInt64Array, stride: number, node: bigint): number {
  const mask = table.length / stride - 1;
  const h = Number(BigInt.asUintN(32, node)) & mask;
  for (let k = 0; k < PROBES; k++) {
    const i = (h + k) & mask;
    if (table[stride * i] === node) return i;
  }
  return -1;
}

/** The first row `node` may take in `table` (one whose deadline is not after `now`), or -1. */
export function freeRow(table: BigInt64Array, stride: number, node: bigint, now: bigint): number {
  const mask = table.length / stride - 1;
  const h = Number(BigInt.asUintN(32, node)) & mask;
  for (let k = 0; k < PROBES; k++) {
    const i = (h + k) & mask;
    if (table[stride * i + 1] <= now) return i;
  }
  return -1;
}
