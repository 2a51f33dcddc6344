/**
 * Keeps dockerode's dependencies for features this project never asks of it from loading with it.
 *
 * dockerode loads, at its own load, an ssh client (`ssh2`, for `ssh://` hosts: ours go through
 * our own forwarder), gRPC with a protobuf loader (BuildKit sessions of image builds) and a tar
 * packer (build contexts). Loading them took about 110 of dockerode's 185 ms here, paid by every
 * command before its first engine call. Each of dockerode's modules that loads one of them is
 * answered from the module cache by a stand-in that loads the real module on first use, so
 * behaviour is unchanged if a call ever needs one.
 *
 * Imported for its effect, before dockerode (see engine.ts). Invariant: a stand-in is only
 * placed while the module is not loaded yet, and only where the real one resolves.
 *
 * @module
 */

import { createRequire, Module } from "node:module";

const require = createRequire(import.meta.url);

/** The module cache entry `filename` resolves to from now on: `exports`, marked loaded. */
function standIn(filename: string, exports: unknown): void {
  // deno-lint-ignore no-explicit-any
  const m = new (Module as any)(filename, null);
  m.filename = filename;
  m.loaded = true;
  m.exports = exports;
  require.cache[filename] = m;
}

/** The real module at `filename`, loaded once in place of its stand-in. */
function real<T>(filename: string): () => T {
  let loaded: T | undefined;
  return () => {
    if (loaded === undefined) {
      delete require.cache[filename];
      loaded = require(filename) as T;
    }
    return loaded;
  };
}

/** A stand-in for a module whose export is a function. */
function lazyFunction(filename: string): void {
  const load = real<(...args: unknown[]) => unknown>(filename);
  standIn(filename, (...args: unknown[]) => load()(...args));
}

/** A stand-in for a module whose export is an object of functions `names`. */
function lazyObject(filename: string, names: readonly string[]): void {
  const load = real<Record<string, unknown>>(filename);
  const exports: Record<string, unknown> = {};
  for (const n of names) Object.defineProperty(exports, n, { get: () => load()[n] });
  standIn(filename, exports);
}

/** Resolved filenames of the modules replaced; undefined when dockerode's layout is not the one known. */
export function unusedDependencies():
  | { ssh: string; session: string; tarFs: string }
  | undefined {
  try {
    const dockerode = require.resolve("dockerode");
    const within = createRequire(dockerode);
    const modem = within.resolve("docker-modem");
    const util = within.resolve("./util");
    return {
      ssh: createRequire(modem).resolve("./ssh"),
      session: within.resolve("./session"),
      tarFs: createRequire(util).resolve("tar-fs"),
    };
  } catch {
    return undefined; // another layout: dockerode loads everything, as it would anyway
  }
}

const files = unusedDependencies();
if (files !== undefined && !(files.ssh in require.cache) && !(files.session in require.cache)) {
  lazyFunction(files.ssh); // docker-modem's agent for ssh:// (loads ssh2)
  lazyFunction(files.session); // dockerode's BuildKit session (loads gRPC, protobufjs)
  if (!(files.tarFs in require.cache)) lazyObject(files.tarFs, ["pack", "extract"]);
}
