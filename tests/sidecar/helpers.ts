/**
 * Sidecar test helpers: target containers started with `docker run` options (read-only root,
 * tmpfs, user), and the helper containers and satellite images dockerfuse made.
 *
 * @module
 */

import { CONTAINER_LABEL, ensureTestBed, type ImageKind } from "../../tasks/testbed/mod.ts";
import { docker } from "../e2e/harness.ts";

/** Label the helper containers carry (src/docker/sidecar.ts). */
export const SIDECAR_LABEL = "dev.dockerfuse.sidecar.target";
/** Label the satellite images carry (src/docker/satellite_image.ts). */
export const IMAGE_LABEL = "dev.dockerfuse.satellite.build";

/** Starts a test container of `kind` with `docker run` options and command; returns its id. */
export async function startTarget(
  kind: ImageKind,
  runOptions: string[] = [],
  command: string[] = [],
): Promise<string> {
  const bed = await ensureTestBed({ kinds: [kind] });
  const args = ["run", "-d", "--network", "none", "--label", CONTAINER_LABEL];
  if (kind === "arm64") args.push("--platform", "linux/arm64");
  args.push(...runOptions, bed.images[kind], ...command);
  return (await docker(args)).stdout.trim().split("\n").pop()!;
}

/** Ids of the helper containers serving `target` (running or not). */
export async function helpersOf(target: string): Promise<string[]> {
  const r = await docker([
    "ps",
    "-aq",
    "--no-trunc",
    "--filter",
    `label=${SIDECAR_LABEL}=${target}`,
  ]);
  return r.stdout.split("\n").filter((l) => l !== "");
}

/** Waits until no helper serves `target`; throws after `ms` with what is left. */
export async function waitNoHelpers(target: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    const left = await helpersOf(target);
    if (left.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`helper container(s) left for ${target.slice(0, 12)}: ${left.join(", ")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Waits until `m`'s client logged `text` (or exited); returns whether it did. */
export async function waitForLog(
  stderr: () => string,
  text: string,
  ms = 60_000,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!stderr().includes(text)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

/** `docker inspect` of one container as JSON. */
export async function inspect(id: string): Promise<Record<string, unknown>> {
  return JSON.parse((await docker(["inspect", id])).stdout)[0];
}

/** Satellite image ids on the engine, "repo:tag" → id. */
export async function satelliteImages(): Promise<Map<string, string>> {
  const r = await docker([
    "images",
    "--filter",
    `label=${IMAGE_LABEL}`,
    "--format",
    "{{.Repository}}:{{.Tag}} {{.ID}}",
  ]);
  return new Map(
    r.stdout.split("\n").filter((l) => l !== "").map((l) => l.split(" ") as [string, string]),
  );
}

/** The "Mounted … in N ms" figure of a client's log. */
export function mountMs(stderr: string): number | undefined {
  const match = / Mounted '[^']*' on '[^']*' in (\d+) ms/.exec(stderr);
  return match ? Number(match[1]) : undefined;
}
