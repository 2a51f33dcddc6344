import { deepStrictEqual, equal } from "node:assert/strict";
import type { SatelliteManifest } from "./satellite.ts";
import {
  HELPER_NOFILE,
  HELPER_NPROC,
  LABEL_SIDECAR,
  needsPtrace,
  sidecarConfig,
} from "./sidecar.ts";

const MANIFEST: SatelliteManifest = {
  formatVersion: 1,
  arch: "x86_64",
  mode: "runtime",
  buildId: "b",
  files: [],
  command: ["{dir}/deno", "run", "{dir}/satellite.js"],
  loaderCommand: ["{dir}/lib/ld.so", "--library-path", "{dir}/lib", "{dir}/deno", "run"],
  glibcProbe: [],
  env: { DENO_DIR: "/dev/null/deno", X: "{dir}/x" },
};

Deno.test("sidecar: SYS_PTRACE only for a non-root target user", () => {
  for (const user of [undefined, "", "root", "0", "0:0", "root:staff", "0:1000"]) {
    equal(needsPtrace(user), false, `user '${user}'`);
  }
  for (const user of ["1000", "1000:1000", "nobody", "app:root"]) {
    equal(needsPtrace(user), true, `user '${user}'`);
  }
});

Deno.test("sidecar: the helper is confined and serves the path inside the target's root", () => {
  const config = sidecarConfig(MANIFEST, { id: "t1", user: "" }, { root: "/srv", image: "img" });
  equal(config.Image, "img");
  deepStrictEqual(config.Entrypoint, ["/dockerfuse/lib/ld.so"]);
  deepStrictEqual(config.Cmd, [
    "--library-path",
    "/dockerfuse/lib",
    "/dockerfuse/deno",
    "run",
    "--root",
    "/srv",
    "--root-in",
    "/proc/1/root",
  ]);
  deepStrictEqual(config.Env, ["DENO_DIR=/dev/null/deno", "X=/dockerfuse/x"]);
  equal(config.User, "0:0");
  equal(config.OpenStdin, true);
  equal(config.StdinOnce, true);
  equal(config.Tty, false);
  deepStrictEqual(config.Labels, { [LABEL_SIDECAR]: "t1" });
  deepStrictEqual(config.HostConfig, {
    PidMode: "container:t1",
    NetworkMode: "none",
    AutoRemove: true,
    LogConfig: { Type: "none", Config: {} },
    ReadonlyRootfs: true,
    SecurityOpt: ["no-new-privileges"],
    CapAdd: [],
    Ulimits: [
      { Name: "nofile", Soft: HELPER_NOFILE, Hard: HELPER_NOFILE },
      { Name: "nproc", Soft: HELPER_NPROC, Hard: HELPER_NPROC },
    ],
  });
  const nonRoot = sidecarConfig(MANIFEST, { id: "t1", user: "1000" }, { root: "/", image: "i" });
  deepStrictEqual((nonRoot.HostConfig as { CapAdd: string[] }).CapAdd, ["SYS_PTRACE"]);
});
