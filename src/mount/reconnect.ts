/**
 * Keeps a mount connected to its container: when the satellite's connection ends, waits for
 * the container to run again (engine events, not polling), reconnects to the engine when it was
 * the engine that went away (with backoff), redeploys the satellite and attaches it to the
 * mount's `ReconnectingRpc`.
 *
 * Invariants:
 * - At most one satellite of the mount is attached at a time; a connection is attached only
 *   after its handshake, and a new one only after the previous one ended.
 * - The loop ends only when the container was removed (and is not followed by name), or when
 *   `signal` aborts (the mount is closing); it never gives up on a container that exists.
 * - Waiting for the container subscribes to its events before looking at its state, so a start
 *   between the two is not missed.
 *
 * @module
 */

import { type ContainerInfo, DockerError, type Engine } from "../docker/mod.ts";
import type { Logger } from "../fuse/mod.ts";
import type { LinkConnection, ReconnectingRpc } from "./reconnecting_rpc.ts";

/** One deployed satellite, connected. */
export interface Satellite extends LinkConnection {
  /** Resolves, with the reason, when this connection has ended. */
  readonly ended: Promise<string>;
  /** Closes the connection and stops the satellite. Idempotent. */
  stop(): Promise<void>;
}

/** The container is gone for good. */
export interface Removed {
  readonly removed: string;
}

/** What reconnecting does, injected (the engine in production, fakes in tests). */
export interface ReconnectSteps<C> {
  /** Waits until the container runs (again); `Removed` when it no longer exists. */
  waitRunning(signal: AbortSignal): Promise<C | Removed>;
  /** Deploys a satellite into `container` and waits for its handshake. */
  deploy(container: C): Promise<Satellite>;
  /** Whether `error` (thrown by a step) means the engine is out of reach. */
  engineLost(error: unknown): boolean;
  /** Connects to the engine anew; throws when it still cannot. */
  reconnectEngine(): Promise<void>;
}

/** Options of {@link supervise}. */
export interface SuperviseOptions<C> {
  link: ReconnectingRpc;
  steps: ReconnectSteps<C>;
  logger: Logger;
  /** Names the container in logs. */
  describe: (container: C) => string;
  /** A new satellite is attached (as connection `generation`) after an outage of `outageMs`. */
  onReconnected: (container: C, satellite: Satellite, generation: number, outageMs: number) => void;
  /** First and longest wait (ms) between failed attempts. Default 250 and 5000. */
  backoffMs?: { first: number; max: number };
  /** Waits `ms` unless `signal` aborts first (injected for tests). */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Keeps `first` (attached already) and its successors attached until the container is removed
 * (resolves with the reason) or `signal` aborts (resolves undefined). `current()` of the result
 * gives the satellite attached last, for the mount to stop at its end.
 */
export function supervise<C>(
  first: Satellite,
  options: SuperviseOptions<C>,
  signal: AbortSignal,
): { ended: Promise<string | undefined>; current: () => Satellite } {
  const { link, steps, logger } = options;
  const sleep = options.sleep ?? abortableSleep;
  const backoff = options.backoffMs ?? { first: 250, max: 5000 };
  let current = first;
  const ended = (async (): Promise<string | undefined> => {
    const aborted = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
    for (;;) {
      const why = await Promise.race([current.ended, aborted.then(() => undefined)]);
      if (signal.aborted || why === undefined) return undefined;
      link.detach();
      const lostAt = performance.now();
      logger.warn(`Lost the satellite (${why}); reconnecting`);
      void current.stop();
      let wait = backoff.first;
      // Each kind of failure is logged as a warning once per outage, then at debug level.
      const warned = new Set<string>();
      const warnOnce = (kind: string, text: string): void => {
        if (warned.has(kind)) logger.debug(text);
        else logger.warn(text);
        warned.add(kind);
      };
      for (;;) {
        if (signal.aborted) return undefined;
        try {
          const state = await steps.waitRunning(signal);
          if (signal.aborted) return undefined;
          if (typeof state === "object" && state !== null && "removed" in state) {
            return (state as Removed).removed;
          }
          const container = state as C;
          logger.debug(`'${options.describe(container)}' runs: redeploying the satellite`);
          const satellite = await steps.deploy(container);
          if (signal.aborted) {
            await satellite.stop();
            return undefined;
          }
          current = satellite;
          const outageMs = Math.round(performance.now() - lostAt);
          const generation = link.attach(satellite);
          options.onReconnected(container, satellite, generation, outageMs);
          logger.info(
            `Reconnected to '${options.describe(container)}' after ${outageMs} ms ` +
              `(connection ${generation})`,
          );
          break;
        } catch (error) {
          if (signal.aborted) return undefined;
          if (steps.engineLost(error)) {
            warnOnce("engine", `The Docker engine is out of reach (${message(error)}); retrying`);
            await sleep(wait, signal);
            wait = Math.min(wait * 2, backoff.max);
            try {
              await steps.reconnectEngine();
              logger.info("Reconnected to the Docker engine");
            } catch (again) {
              logger.debug(`Cannot reconnect to the Docker engine yet: ${message(again)}`);
            }
            continue;
          }
          warnOnce("deploy", `Cannot redeploy the satellite yet: ${message(error)}`);
          await sleep(wait, signal);
          wait = Math.min(wait * 2, backoff.max);
        }
      }
    }
  })();
  return { ended, current: () => current };
}

/** Milliseconds a single inspect may take before the engine counts as out of reach. */
const INSPECT_TIMEOUT_MS = 5_000;

async function inspectWithin(engine: Engine, ref: string): Promise<ContainerInfo> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      engine.inspectContainer(ref, { allowStopped: true }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new DockerError("unreachable", `Cannot inspect '${ref}': the engine did not answer`),
            ),
          INSPECT_TIMEOUT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits until the container `ref` (its id, or its `name` to follow whatever container has it) runs:
 * its state first, then again at each of its engine events. `Removed` when no container is
 * `ref` and `follow` is off. Throws DockerError "unreachable" when the engine goes away.
 */
export async function waitForContainer(
  engine: Engine,
  ref: string,
  name: string,
  follow: boolean,
  signal: AbortSignal,
): Promise<ContainerInfo | Removed> {
  const stop = new AbortController();
  const onAbort = (): void => stop.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  const events = engine.containerEvents(ref, stop.signal);
  try {
    // The first event says the engine streams: only then is the state looked at. An engine that
    // does not answer (a connection to nowhere) counts as out of reach.
    let timer: ReturnType<typeof setTimeout> | undefined;
    let next = await Promise.race([
      events.next(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          stop.abort();
          reject(
            new DockerError("unreachable", `Cannot watch '${name}': the engine did not answer`),
          );
        }, INSPECT_TIMEOUT_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    for (;;) {
      if (next.done || signal.aborted) throw new DockerError("unreachable", "no more events");
      try {
        const info = await inspectWithin(engine, ref);
        if (info.running) return info;
      } catch (error) {
        if (!(error instanceof DockerError && error.code === "not-found")) throw error;
        if (!follow) return { removed: `container '${name}' was removed` };
      }
      next = await events.next();
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    stop.abort();
    await events.return(undefined).catch(() => {});
  }
}
