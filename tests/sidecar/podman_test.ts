// Sidecar mode on Podman (its Docker-compatible API on /run/podman/podman.sock, which the test
// bed installs and starts when missing): `--pid container:` works there too.

import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { ensurePodmanBed, PODMAN_HOST, PODMAN_RUN_ARGS } from "../../tasks/testbed/mod.ts";
import { isMounted, sh, startMount } from "../e2e/harness.ts";
import { SIDECAR_LABEL, waitForLog } from "./helpers.ts";

const decoder = new TextDecoder();

async function podman(args: string[], check = true): Promise<string> {
  const out = await new Deno.Command("podman", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (check && !out.success) {
    throw new Error(`podman ${args.join(" ")} failed: ${decoder.decode(out.stderr)}`);
  }
  return decoder.decode(out.stdout);
}

/** The bed's static image in Podman's storage (the bed installs and starts Podman if needed). */
async function podmanImage(): Promise<string> {
  return (await ensurePodmanBed({ kinds: ["static"] })).images.static;
}

async function helpers(target: string): Promise<string[]> {
  const out = await podman([
    "ps",
    "-aq",
    "--no-trunc",
    "--filter",
    `label=${SIDECAR_LABEL}=${target}`,
  ]);
  return out.split("\n").filter((l) => l !== "");
}

async function waitNoHelpers(target: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await helpers(target)).length > 0) {
    if (Date.now() > deadline) throw new Error(`helper left for ${target.slice(0, 12)} on Podman`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

Deno.test("podman sidecar: a --read-only --tmpfs /tmp USER 1000 container mounts; stopping it ends the mount", async () => {
  const image = await podmanImage();
  const target = (await podman([
    "run",
    "-d",
    "--network",
    "none",
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--user",
    "1000",
    ...PODMAN_RUN_ARGS,
    image,
  ])).trim();
  try {
    const m = await startMount("static", { container: target, env: { DOCKER_HOST: PODMAN_HOST } });
    try {
      match(m.stderr(), /: using a sidecar/);
      equal((await sh(m.mountpoint, 'test -x "$M/pause"')).code, 0);
      const wrote = await sh(m.mountpoint, 'printf podman > "$M/tmp/f" && cat "$M/tmp/f"');
      equal(wrote.stdout, "podman", wrote.stderr);
      const refused = await sh(m.mountpoint, 'printf x > "$M/rootfile"');
      match(refused.stderr, /Read-only file system/);
      const ids = await helpers(target);
      equal(ids.length, 1);
      const host = JSON.parse(await podman(["inspect", ids[0]]))[0].HostConfig;
      equal(host.PidMode, `container:${target}`);
      equal(host.ReadonlyRootfs, true);
      equal(host.LogConfig.Type, "none");
      deepStrictEqual(host.CapAdd, ["CAP_SYS_PTRACE"]);
      equal(await m.stop("SIGTERM"), 0);
      equal(await isMounted(m.mountpoint), false);
      await waitNoHelpers(target);
    } finally {
      await m.cleanup();
    }
    // Stopping the target (its PID namespace ends) ends the helper, and without reconnect the
    // mount.
    const again = await startMount("static", {
      container: target,
      env: { DOCKER_HOST: PODMAN_HOST },
      args: ["--no-reconnect"],
    });
    try {
      await podman(["stop", "-t", "0", target]);
      ok(await waitForLog(again.stderr, "stopped"), again.stderr());
      equal(await again.stop("SIGCONT"), 8, again.stderr());
      await waitNoHelpers(target);
    } finally {
      await again.cleanup();
    }
  } finally {
    await podman(["rm", "-f", "-t", "0", target], false);
  }
});
