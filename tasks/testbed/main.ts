/**
 * `deno task testbed [ensure|status|clean]`: set up, inspect or remove the test bed.
 *
 * @module
 */

import { docker, DOCKERD_LOG, dockerHostFromEnv, engineAnswers } from "./engine.ts";
import { ALL_KINDS, IMAGE_REPO, type ImageKind, imageRef } from "./images.ts";
import { CONTAINER_LABEL, ensureFuseTools, ensureTestBed } from "./mod.ts";
import { binfmtFlags, cacheDir, hasCommand } from "./system.ts";

const USAGE = `Usage: deno task testbed [ensure|status|clean] [KIND...]

  ensure   install/start/build whatever is missing (default; KINDs: ${ALL_KINDS.join(", ")})
  status   show what is there without changing anything
  clean    remove test containers and all ${IMAGE_REPO}/* images
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
  for (const kind of ALL_KINDS) {
    const ref = await imageRef(kind);
    const has = present.includes(ref);
    ok &&= has;
    console.log(`image       ${ref}: ${has ? "present" : "missing"}`);
  }
  return ok ? 0 : 1;
}

async function clean(): Promise<number> {
  const host = dockerHostFromEnv();
  if (!(await engineAnswers(host))) {
    console.log(`no engine answers at ${host}; nothing to clean`);
    return 0;
  }
  const ids = (await docker(host, ["ps", "-aq", "--filter", `label=${CONTAINER_LABEL}`])).stdout
    .split("\n").filter((l) => l.length > 0);
  if (ids.length > 0) await docker(host, ["rm", "-f", ...ids]);
  const refs = (await docker(host, ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])).stdout
    .split("\n").filter((l) => l.startsWith(`${IMAGE_REPO}/`));
  if (refs.length > 0) await docker(host, ["rmi", "-f", ...refs]);
  console.log(`removed ${ids.length} container(s) and ${refs.length} image(s)`);
  return 0;
}

async function main(args: string[]): Promise<number> {
  const [sub = "ensure", ...rest] = args;
  switch (sub) {
    case "ensure": {
      const bad = rest.filter((k) => !(ALL_KINDS as readonly string[]).includes(k));
      if (bad.length > 0) {
        console.error(`Unknown image kind(s): ${bad.join(", ")}\n\n${USAGE}`);
        return 2;
      }
      const started = Date.now();
      const kinds = rest.length > 0 ? rest as ImageKind[] : undefined;
      const bed = await ensureTestBed({ kinds }); // batches fuse3 into its apt run
      await ensureFuseTools();
      console.log(`engine ${bed.dockerHost}`);
      for (const kind of kinds ?? ALL_KINDS) console.log(`${kind.padEnd(6)} ${bed.images[kind]}`);
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
