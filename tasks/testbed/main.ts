/**
 * `deno task testbed [ensure|status|clean]`: set up, inspect or remove the test bed.
 *
 * @module
 */

import { docker, DOCKERD_LOG, dockerHostFromEnv, engineAnswers } from "./engine.ts";
import { IMAGE_REPO, imageRef } from "./images.ts";
import {
  type BedKind,
  CONTAINER_LABEL,
  ensureFuseTools,
  ensurePodmanBed,
  ensureTestBed,
  EVERY_KIND,
} from "./mod.ts";
import { PODMAN_HOST, PODMAN_LOG, podmanAnswers } from "./podman.ts";
import { isRealKind, realImageRef } from "./real_images.ts";
import { binfmtFlags, cacheDir, hasCommand } from "./system.ts";

const USAGE = `Usage: deno task testbed [ensure|podman|status|clean] [KIND...]

  ensure   install/start/build whatever is missing (default; KINDs: ${EVERY_KIND.join(", ")})
  podman   the same, then Podman (installed and started when missing) with copies of the images
  status   show what is there without changing anything
  clean    remove test containers and all ${IMAGE_REPO}/* images (Docker and Podman)
           (downloaded packages stay cached in ${cacheDir()})`;

async function status(): Promise<number> {
  const host = dockerHostFromEnv();
  const up = await hasCommand("docker") && await engineAnswers(host);
  console.log(
    `engine      ${host}: ${up ? "answers" : "does not answer"} (dockerd log: ${DOCKERD_LOG})`,
  );
  console.log(`fusermount3 ${(await hasCommand("fusermount3")) ? "installed" : "missing"}`);
  const flags = await binfmtFlags("qemu-aarch64");
  console.log(
    `qemu        ${flags === undefined ? "not registered" : `registered, flags ${flags}`}`,
  );
  const present = up
    ? (await docker(host, ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])).stdout
      .split("\n")
    : [];
  let ok = up && (flags ?? "").includes("F");
  for (const kind of EVERY_KIND) {
    const ref = isRealKind(kind) ? await realImageRef(kind) : await imageRef(kind);
    const has = present.includes(ref);
    ok &&= has;
    console.log(`image       ${ref}: ${has ? "present" : "missing"}`);
  }
  console.log(
    `podman      ${PODMAN_HOST}: ${
      (await podmanAnswers()) ? "answers" : "does not answer"
    } (log: ${PODMAN_LOG})`,
  );
  return ok ? 0 : 1;
}

/** Removes the bed's containers (with their anonymous volumes) and images from one engine. */
async function cleanEngine(host: string): Promise<void> {
  const ids = (await docker(host, ["ps", "-aq", "--filter", `label=${CONTAINER_LABEL}`])).stdout
    .split("\n").filter((l) => l.length > 0);
  if (ids.length > 0) await docker(host, ["rm", "-f", "-v", ...ids]);
  // Podman lists the images it loaded as localhost/<repo>.
  const refs = (await docker(host, ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])).stdout
    .split("\n").filter((l) => l.replace(/^localhost\//, "").startsWith(`${IMAGE_REPO}/`));
  if (refs.length > 0) await docker(host, ["rmi", "-f", ...refs]);
  console.log(`${host}: removed ${ids.length} container(s) and ${refs.length} image(s)`);
}

async function clean(): Promise<number> {
  const host = dockerHostFromEnv();
  if (await engineAnswers(host)) await cleanEngine(host);
  else console.log(`no engine answers at ${host}; nothing to clean there`);
  if (await podmanAnswers()) await cleanEngine(PODMAN_HOST);
  return 0;
}

async function main(args: string[]): Promise<number> {
  const [sub = "ensure", ...rest] = args;
  switch (sub) {
    case "ensure":
    case "podman": {
      const bad = rest.filter((k) => !(EVERY_KIND as readonly string[]).includes(k));
      if (bad.length > 0) {
        console.error(`Unknown image kind(s): ${bad.join(", ")}\n\n${USAGE}`);
        return 2;
      }
      const started = Date.now();
      const kinds = rest.length > 0 ? rest as BedKind[] : [...EVERY_KIND];
      // ensureTestBed batches fuse3 into its apt run
      const bed = sub === "podman"
        ? await ensurePodmanBed({ kinds })
        : await ensureTestBed({ kinds });
      await ensureFuseTools();
      console.log(`engine ${bed.dockerHost}`);
      for (const kind of kinds) console.log(`${kind.padEnd(10)} ${bed.images[kind]}`);
      console.log(`test bed ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      return 0;
    }
    case "status":
      return await status();
    case "clean":
      return await clean();
    case "-h":
    case "--help":
    case "help":
      console.log(USAGE);
      return 0;
    default:
      console.error(`Unknown command '${sub}'\n\n${USAGE}`);
      return 2;
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
