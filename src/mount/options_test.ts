import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type { Logger } from "../fuse/mod.ts";
import { WALK_SLICE_MS } from "../protocol/mod.ts";
import { layerOptions, MOUNT_DEFAULTS, mountOptions } from "./options.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const context = {
  fsName: "dockerfuse:web",
  hostArch: "x86_64",
  remoteEngine: false,
  logger: quiet,
};

Deno.test("mount options: the defaults, then the changes; what and where always given", () => {
  deepStrictEqual(mountOptions("web", "/mnt"), {
    ...MOUNT_DEFAULTS,
    container: "web",
    mountpoint: "/mnt",
  });
  const changed = mountOptions("web", "/mnt", { readOnly: true, user: "1000:1000" });
  deepStrictEqual([changed.readOnly, changed.user, changed.path], [true, "1000:1000", "/"]);
  ok(Object.isFrozen(MOUNT_DEFAULTS));
});

Deno.test("layer options: each layer gets its part of the mount options", () => {
  const options = mountOptions("web", "/mnt", {
    path: "/srv",
    user: "nobody",
    readOnly: true,
    allowOther: true,
    nonEmpty: true,
    attrTimeout: 2,
    entryTimeout: 3,
    negativeTimeout: 4,
    requestTimeout: 5,
    writebackCache: true,
    debug: true,
    direct: false,
    ioUring: true,
  });
  const layers = layerOptions(options, context);
  deepStrictEqual(layers.deploy, { root: "/srv", user: "nobody", mode: "auto", direct: false });
  deepStrictEqual(layers.rpc, { timeoutMs: 5000 });
  deepStrictEqual(layers.fs, {
    attrTimeout: 2,
    entryTimeout: 3,
    hostArch: "x86_64",
    writebackCache: true,
    writeBehind: true,
    walkSliceMs: WALK_SLICE_MS,
    logger: quiet,
    live: { timeout: 60, maxWatches: 65536, debug: true },
  });
  // Far from the engine, walks ahead are not cut short (each answer costs a round trip).
  equal(layerOptions(options, { ...context, remoteEngine: true }).fs.walkSliceMs, undefined);
  deepStrictEqual(layers.fuse, {
    fsName: "dockerfuse:web",
    subtype: "dockerfuse",
    readOnly: true,
    allowOther: true,
    allowNonEmpty: true,
    entryTimeout: 3,
    attrTimeout: 2,
    negativeTimeout: 4,
    writebackCache: true,
    cacheSymlinks: true,
    posixAcl: true,
    ioUring: true,
    logger: quiet,
    debug: true,
  });
  const off = layerOptions(mountOptions("web", "/mnt", { watch: false, acl: false }), context);
  deepStrictEqual([off.fs.live, off.fuse.cacheSymlinks, off.fuse.posixAcl], [
    undefined,
    false,
    false,
  ]);
});

Deno.test("layer options: sync writes turn write-behind off; no request timeout stays 0", () => {
  const layers = layerOptions(
    mountOptions("web", "/mnt", { syncWrites: true, requestTimeout: 0 }),
    context,
  );
  equal(layers.fs.writeBehind, false);
  equal(layers.rpc.timeoutMs, 0);
  equal(layerOptions(mountOptions("web", "/mnt"), context).fs.writeBehind, true);
});
