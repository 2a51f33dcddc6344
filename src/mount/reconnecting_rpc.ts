/**
 * The satellite connection of a mount that survives the satellite: an `RpcLink` whose
 * connection is replaced each time the satellite is redeployed.
 *
 * Invariants:
 * - Connections are numbered from 1 (`generation`), one number per `attach`.
 * - A call through `on(g)` is sent on connection `g` only, and only while it is attached and
 *   open; otherwise it fails with EIO unsent (a handle id of a dead satellite never reaches a
 *   newer one).
 * - A call through `call` goes to the connection attached when it is sent. Sent while none is
 *   (or the attached one has closed), it waits up to `graceMs` for the next one, then fails with
 *   EIO; after `end()` it fails at once. A call in flight when its connection closes fails
 *   with EIO (it may or may not have been carried out) and is never sent again.
 *
 * @module
 */

import type { RpcLink } from "../fs/rpc_link.ts";
import {
  errnoNumber,
  isMethodName,
  type MethodName,
  METHODS,
  type RpcCalls,
  type RpcFailureResult,
  type RpcResult,
} from "../protocol/mod.ts";

/** What the link needs of one connection (an `RpcClient`). */
export interface LinkConnection {
  readonly call: RpcCalls;
  readonly isClosed: boolean;
}

/** Options of {@link ReconnectingRpc}. */
export interface ReconnectingRpcOptions {
  /** How long (ms) a call sent while disconnected waits for a connection. */
  graceMs: number;
}

function eio(message: string): RpcFailureResult {
  return { ok: false, errno: errnoNumber("EIO"), code: "EIO", message };
}

type AnyCall = (params: unknown, options?: unknown) => Promise<RpcResult<unknown>>;

function callsOf(
  send: (method: MethodName, params: unknown, options: unknown) => Promise<RpcResult<unknown>>,
): RpcCalls {
  const calls: Record<string, AnyCall> = {};
  for (const method of Object.keys(METHODS)) {
    if (!isMethodName(method)) continue;
    calls[method] = (params, options) => send(method, params, options);
  }
  return calls as unknown as RpcCalls;
}

/** An `RpcLink` over a sequence of connections. */
export class ReconnectingRpc implements RpcLink {
  readonly call: RpcCalls;
  readonly #graceMs: number;
  #connection: LinkConnection | undefined;
  #generation = 0;
  #ended = false;
  #pinned: { generation: number; calls: RpcCalls } | undefined;
  /** Woken at each attach and at the end. */
  #waiters = new Set<() => void>();

  constructor(options: ReconnectingRpcOptions) {
    this.#graceMs = options.graceMs;
    this.call = callsOf(async (method, params, options) => {
      let connection = this.#open();
      if (connection === undefined) {
        if (!await this.connected()) return eio(`${method}: not connected to the satellite`);
        connection = this.#open();
        if (connection === undefined) return eio(`${method}: not connected to the satellite`);
      }
      return (connection.call[method] as AnyCall)(params, options);
    });
  }

  get generation(): number {
    return this.#generation;
  }

  get up(): boolean {
    return this.#open() !== undefined;
  }

  /** The attached connection while it is open. */
  #open(): LinkConnection | undefined {
    const connection = this.#connection;
    return connection !== undefined && !connection.isClosed ? connection : undefined;
  }

  /** Makes `connection` the current one; returns its number. */
  attach(connection: LinkConnection): number {
    if (this.#ended) throw new Error("Cannot attach a connection to an ended link");
    this.#connection = connection;
    this.#generation++;
    this.#wake();
    return this.#generation;
  }

  /** The current connection is gone; calls wait for the next one. */
  detach(): void {
    this.#connection = undefined;
  }

  /** No connection will come any more: waiting and later calls fail at once. */
  end(): void {
    this.#ended = true;
    this.#connection = undefined;
    this.#wake();
  }

  #wake(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  on(generation: number): RpcCalls {
    if (this.#pinned?.generation === generation) return this.#pinned.calls;
    const calls = callsOf((method, params, options) => {
      const connection = this.#open();
      if (connection === undefined || this.#generation !== generation) {
        return Promise.resolve(
          eio(`${method}: the satellite of connection ${generation} is gone`),
        );
      }
      return (connection.call[method] as AnyCall)(params, options);
    });
    if (generation === this.#generation) this.#pinned = { generation, calls };
    return calls;
  }

  connected(): Promise<boolean> {
    if (this.up) return Promise.resolve(true);
    if (this.#ended || this.#graceMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve(this.up);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(wake);
        resolve(this.up);
      }, this.#graceMs);
      this.#waiters.add(wake);
    });
  }
}
