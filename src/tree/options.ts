/**
 * The engine mount's options and their defaults: what the command line needs of the engine tree,
 * without loading it.
 *
 * @module
 */

import type { ContainerMountOptions } from "../mount/options.ts";

/** Options of an engine mount: a container mount's (but what and which path), plus the policy. */
export interface EngineMountOptions extends Omit<ContainerMountOptions, "container" | "path"> {
  /** Seconds without use before a target's satellite is detached. */
  idleTimeout: number;
  /** Satellites attached at most at once. */
  maxAttached: number;
}

/** The defaults of the engine mount's own options. */
export const ENGINE_DEFAULTS: Readonly<Pick<EngineMountOptions, "idleTimeout" | "maxAttached">> =
  Object.freeze({ idleTimeout: 60, maxAttached: 8 });
