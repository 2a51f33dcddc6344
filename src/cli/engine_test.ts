import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { MOUNT_DEFAULTS } from "../mount/options.ts";
import { ENGINE_DEFAULTS } from "../tree/mod.ts";
import { parseArgs } from "./args.ts";

Deno.test("args: engine with defaults: a mount's, plus idle timeout and bound", async () => {
  const r = await parseArgs(["engine", "/mnt/docker"]);
  ok(r.kind === "engine");
  const { container: _c, path: _p, ...mountDefaults } = { ...MOUNT_DEFAULTS, container: "" };
  deepStrictEqual(r.options, {
    ...mountDefaults,
    ...ENGINE_DEFAULTS,
    mountpoint: "/mnt/docker",
  });
  deepStrictEqual([r.daemon, r.logFormat], [false, "text"]);
});

Deno.test("args: engine options and -o lists", async () => {
  const r = await parseArgs([
    "engine",
    "--idle-timeout",
    "5",
    "--max-attached",
    "3",
    "--sync-writes",
    "-o",
    "ro,allow_other",
    "-d",
    "/mnt/docker",
  ]);
  ok(r.kind === "engine");
  deepStrictEqual(
    [
      r.options.idleTimeout,
      r.options.maxAttached,
      r.options.readOnly,
      r.options.allowOther,
      r.options.syncWrites,
    ],
    [5, 3, true, true, true],
  );
  equal(r.daemon, true);
});

Deno.test("args: engine refuses a path and a bound below 1", async () => {
  const path = await parseArgs(["engine", "-o", "path=/srv", "/mnt/docker"]);
  equal(path.kind, "usage-error");
  const bound = await parseArgs(["engine", "--max-attached", "0", "/mnt/docker"]);
  equal(bound.kind, "usage-error");
});
