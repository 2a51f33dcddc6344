/**
 * What the container filesystem needs of its connection to the satellite when that connection
 * can be replaced (the satellite redeployed after a restart): numbered connections.
 *
 * Invariants:
 * - A satellite handle id belongs to the connection (`generation`) that answered it; calls
 *   carrying it go through `on(generation)`, which never sends them on another connection (the
 *   same number could name another file there).
 * - `call` names files by path: such calls may wait for the next connection.
 *
 * @module
 */

import type { RpcCalls } from "../protocol/mod.ts";

/** A replaceable connection to the satellite. */
export interface RpcLink {
  /** Calls naming files by path; while disconnected they wait (a grace period) for a connection. */
  readonly call: RpcCalls;
  /** The number of the current (or last) connection. */
  readonly generation: number;
  /** A connection is up. */
  readonly up: boolean;
  /** Calls sent only on connection `generation`; otherwise they fail with EIO unsent. */
  on(generation: number): RpcCalls;
  /** Resolves true once a connection is up, false when the grace period ended without one. */
  connected(): Promise<boolean>;
}

/** The link of a connection that is never replaced (generation 0). */
export function fixedLink(calls: RpcCalls): RpcLink {
  return {
    call: calls,
    generation: 0,
    up: true,
    on: () => calls,
    connected: () => Promise.resolve(true),
  };
}

/** True for a link (as opposed to plain calls). */
export function isLink(rpc: RpcCalls | RpcLink): rpc is RpcLink {
  // By the types of its members, not their presence: RpcCalls may be a Proxy answering any name.
  const link = rpc as Partial<RpcLink>;
  return typeof link.generation === "number" && typeof link.up === "boolean";
}
