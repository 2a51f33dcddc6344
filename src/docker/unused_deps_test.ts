import { deepStrictEqual, ok } from "node:assert/strict";
import { createRequire } from "node:module";
import { unusedDependencies } from "./unused_deps.ts";
import { Engine } from "./engine.ts"; // loads dockerode, after the stand-ins (its first import)

const require = createRequire(import.meta.url);

/** Loaded files of the packages the stand-ins keep out (resolved paths in the module cache). */
function loadedHeavy(): string[] {
  return Object.keys(require.cache).filter((f) =>
    /node_modules\/(?:\.deno\/[^/]+\/node_modules\/)?(?:ssh2|@grpc|protobufjs|tar-stream)\//.test(f)
  );
}

Deno.test("dockerode loads without ssh2, gRPC, protobufjs or tar-stream", () => {
  ok(unusedDependencies() !== undefined, "dockerode's layout is not the one the stand-ins know");
  ok(typeof Engine === "function");
  deepStrictEqual(loadedHeavy(), []);
});

Deno.test("a stand-in loads the real module on first use, with its behaviour", () => {
  const files = unusedDependencies()!;
  // docker-modem's ssh agent factory: a function that makes an http.Agent over ssh2.
  const agent = (require(files.ssh) as (opt: unknown) => { createConnection?: unknown })({});
  deepStrictEqual(typeof agent.createConnection, "function");
  ok(loadedHeavy().some((f) => f.includes("/ssh2/")), "ssh2 was not loaded by the call");
  // tar-fs: its functions are the real ones once asked for.
  const tar = require(files.tarFs) as { pack: unknown; extract: unknown };
  deepStrictEqual(typeof tar.pack, "function");
  deepStrictEqual(typeof tar.extract, "function");
  ok(loadedHeavy().some((f) => f.includes("/tar-stream/")), "tar-stream was not loaded");
});
