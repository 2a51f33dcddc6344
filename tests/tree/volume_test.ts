/**
 * volumes/ of an engine mount, served in-process: the satellite image comes from a provider
 * this test makes with `docker import` (the sidecar mode's `SatelliteImages` is the real one).
 */

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { readManifest, type SatelliteManifest } from "../../src/docker/mod.ts";
import { bundleEntries } from "../../src/docker/satellite.ts";
import { tarParts } from "../../src/docker/tar.ts";
import { MOUNT_DEFAULTS } from "../../src/mount/mod.ts";
import { ENGINE_DEFAULTS, mountEngine } from "../../src/tree/mod.ts";
import { ensureTestBed } from "../../tasks/testbed/mod.ts";
import { docker, helperContainers, isMounted, until } from "./harness.ts";

const tag = crypto.randomUUID().slice(0, 8);
const BUNDLE_ROOT = new URL("../../dist/satellite", import.meta.url).pathname;

/** Imports the bundle as an image under /dockerfuse (what the sidecar's image holds). */
async function importSatellite(
  bundleDir: string,
  manifest: SatelliteManifest,
): Promise<{ ref: string; dir: string }> {
  const ref = `dfe-tree-satellite:${tag}`;
  if ((await docker(["image", "inspect", ref], false)).code === 0) {
    return { ref, dir: "/dockerfuse" };
  }
  const entries = await bundleEntries(bundleDir, manifest, "dockerfuse", { uid: 0, gid: 0 });
  const file = await Deno.makeTempFile({ suffix: ".tar" });
  try {
    const out = await Deno.open(file, { write: true });
    for (const part of tarParts(entries)) {
      if (part instanceof Uint8Array) await out.write(part);
      else for await (const chunk of part.chunks()) await out.write(chunk);
    }
    out.close();
    await docker(["import", "--change", "LABEL dev.dockerfuse.test=tree", file, ref]);
  } finally {
    await Deno.remove(file);
  }
  return { ref, dir: "/dockerfuse" };
}

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

Deno.test({
  name: "engine: a file written under volumes/<name> is seen by a container using the volume",
  // The mount is served by this process: its worker and event stream end with close().
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const bed = await ensureTestBed({ kinds: ["musl"] });
    await readManifest(`${BUNDLE_ROOT}/x86_64`); // the bundle is built (deno task test does it)
    const volume = `dfe-tree-${tag}-vol`;
    const later = `dfe-tree-${tag}-later`;
    await docker(["volume", "create", "--label", "dev.dockerfuse.test=tree", volume]);
    const helpersBefore = new Set(await helperContainers());
    const mountpoint = await Deno.makeTempDir({ prefix: "dockerfuse-tree-" });
    const mounted = await mountEngine({
      ...MOUNT_DEFAULTS,
      ...ENGINE_DEFAULTS,
      mountpoint,
    }, {
      env: Deno.env.toObject(),
      logger: quiet,
      bundleRoot: BUNDLE_ROOT,
      satelliteImage: importSatellite,
    });
    try {
      const dir = `${mountpoint}/volumes/${volume}`;
      const started = performance.now();
      ok((await Deno.stat(dir)).isDirectory);
      console.log(
        `figure: the first volume listing took ${Math.round(performance.now() - started)} ms`,
      );
      await Deno.writeTextFile(`${dir}/from-host.txt`, "written through the tree\n");
      const seen = await docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        "dockerfuse-testbed=1",
        "-v",
        `${volume}:/v`,
        bed.images.musl,
        "cat",
        "/v/from-host.txt",
      ]);
      equal(seen.stdout, "written through the tree\n");
      await docker(["volume", "create", "--label", "dev.dockerfuse.test=tree", later]);
      const shown = await until(`${later} in volumes/`, async () => {
        try {
          return (await Deno.stat(`${mountpoint}/volumes/${later}`)).isDirectory;
        } catch {
          return false;
        }
      });
      console.log(`figure: a created volume showed ${shown} ms after 'docker volume create'`);
    } finally {
      await mounted.close();
      await Deno.remove(mountpoint, { recursive: true }).catch(() => {});
    }
    try {
      equal(await isMounted(mountpoint), false);
      deepStrictEqual((await helperContainers()).filter((id) => !helpersBefore.has(id)), []);
    } finally {
      await docker(["volume", "rm", volume, later], false);
      await docker(["rmi", `dfe-tree-satellite:${tag}`], false);
    }
  },
});
