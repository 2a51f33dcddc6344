/**
 * Recipes of test images shaped like what users run, built without any registry:
 *   scratch     one static binary (/pause) and /data: no /etc, no /tmp, no shell (FROM scratch)
 *   nonroot     the same plus /etc/passwd and /tmp, with a non-root default USER
 *   arm64-bare  busybox-static for arm64 without /etc/passwd (run through qemu)
 * A tag is a hash over this file and the data and pause recipes it uses, so these images are
 * rebuilt only when their own recipe changes (the four images of images.ts keep their tags).
 * The few helpers shared with images.ts are repeated here for that reason.
 *
 * @module
 */

import { smallDataEntries, writeEntries } from "./data.ts";
import { docker } from "./engine.ts";
import { IMAGE_REPO } from "./images.ts";
import { pauseElf } from "./pause_elf.ts";
import { type Apt, log, removeTree, run, sha256File, sha256Hex } from "./system.ts";

export type RealKind = "scratch" | "nonroot" | "arm64-bare";
export const REAL_KINDS: readonly RealKind[] = ["scratch", "nonroot", "arm64-bare"];

/** The default USER of the nonroot image (in its /etc/passwd as "app"). */
export const NONROOT_UID = 1000;

/** Keep-alive command per kind (the image's CMD). */
export const REAL_KEEP_ALIVE: Readonly<Record<RealKind, string[]>> = {
  scratch: ["/pause"],
  nonroot: ["/pause"],
  "arm64-bare": ["/bin/sleep", "2147483647"],
};

const RECIPE_FILES = ["real_images.ts", "data.ts", "pause_elf.ts"];

export function isRealKind(kind: string): kind is RealKind {
  return (REAL_KINDS as readonly string[]).includes(kind);
}

/** Image reference of `kind` for the current recipe, e.g. "dockerfuse-test/scratch:0123abcd4567". */
export async function realImageRef(kind: RealKind): Promise<string> {
  const sources = await Promise.all(
    RECIPE_FILES.map((f) => Deno.readTextFile(new URL(f, import.meta.url))),
  );
  const hash = await sha256Hex([kind, ...sources].join("\0"));
  return `${IMAGE_REPO}/${kind}:${hash.slice(0, 12)}`;
}

/** Host packages and .deb downloads the build of `kind` requires. */
export function realBuildNeeds(kind: RealKind): {
  packages: string[];
  downloads: { pkg: string; arch: string }[];
  foreignArch?: string;
} {
  if (kind !== "arm64-bare") return { packages: [], downloads: [] };
  return {
    packages: ["qemu-user-static"],
    downloads: [{ pkg: "busybox-static", arch: "arm64" }],
    foreignArch: "arm64",
  };
}

/** Builds the image of `kind` and tags it `ref`; removes older tags of the same kind. */
export async function buildRealImage(
  ctx: { host: string; cache: string; apt: Apt },
  kind: RealKind,
  ref: string,
): Promise<void> {
  const started = Date.now();
  log(`building ${ref}`);
  const dir = `${ctx.cache}/build-${kind}`;
  await removeTree(dir);
  const root = `${dir}/rootfs`;
  await Deno.mkdir(root, { recursive: true });
  try {
    await writeEntries(`${root}/data`, smallDataEntries(kind));
    if (kind === "arm64-bare") {
      const deb = await ctx.apt.download("busybox-static", "arm64", `${ctx.cache}/debs`);
      await run("dpkg-deb", ["-x", deb, `${dir}/busybox-deb`]);
      await Deno.mkdir(`${root}/bin`);
      await Deno.copyFile(`${dir}/busybox-deb/bin/busybox`, `${root}/bin/busybox`);
      await Deno.chmod(`${root}/bin/busybox`, 0o755);
      await Deno.symlink("busybox", `${root}/bin/sleep`);
      await loadArm64(ctx.host, dir, root, ref);
    } else {
      await Deno.writeFile(`${root}/pause`, pauseElf());
      await Deno.chmod(`${root}/pause`, 0o755);
      const changes = [`CMD ${JSON.stringify(REAL_KEEP_ALIVE[kind])}`];
      if (kind === "nonroot") {
        await Deno.mkdir(`${root}/etc`);
        await Deno.writeTextFile(
          `${root}/etc/passwd`,
          `root:x:0:0:root:/root:/sbin/nologin\napp:x:${NONROOT_UID}:${NONROOT_UID}::/data:/sbin/nologin\n`,
        );
        await Deno.writeTextFile(`${root}/etc/group`, `root:x:0:\napp:x:${NONROOT_UID}:\n`);
        await Deno.mkdir(`${root}/tmp`);
        await Deno.chmod(`${root}/tmp`, 0o1777);
        // The app owns its data, as images with a USER usually arrange.
        await run("chown", ["-R", `${NONROOT_UID}:${NONROOT_UID}`, `${root}/data`]);
        changes.push("USER app");
      }
      await tarDir(root, `${dir}/image.tar`);
      await docker(ctx.host, [
        "import",
        ...changes.flatMap((c) => ["--change", c]),
        `${dir}/image.tar`,
        ref,
      ]);
    }
  } finally {
    await removeTree(dir);
  }
  await removeOldTags(ctx.host, ref);
  log(`built ${ref} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** An arm64 image in `docker save` layout (`docker import` would record amd64), loaded. */
async function loadArm64(host: string, dir: string, root: string, ref: string): Promise<void> {
  const load = `${dir}/load`;
  await Deno.mkdir(`${load}/layer`, { recursive: true });
  await tarDir(root, `${load}/layer/layer.tar`);
  const diffId = await sha256File(`${load}/layer/layer.tar`);
  const created = "2023-06-10T00:00:00Z";
  const config = JSON.stringify({
    architecture: "arm64",
    variant: "v8",
    os: "linux",
    created,
    config: { Env: ["PATH=/bin"], Cmd: REAL_KEEP_ALIVE["arm64-bare"] },
    rootfs: { type: "layers", diff_ids: [`sha256:${diffId}`] },
    history: [{ created, created_by: "dockerfuse test bed: busybox-static:arm64, no /etc" }],
  });
  const configName = `${await sha256Hex(config)}.json`;
  await Deno.writeTextFile(`${load}/${configName}`, config);
  await Deno.writeTextFile(
    `${load}/manifest.json`,
    JSON.stringify([{ Config: configName, RepoTags: [ref], Layers: ["layer/layer.tar"] }]),
  );
  await tarDir(load, `${dir}/image.tar`);
  await docker(host, ["load", "-i", `${dir}/image.tar`]);
}

/** Archives `dir` with numeric owners. */
async function tarDir(dir: string, out: string): Promise<void> {
  await run("tar", ["--numeric-owner", "-C", dir, "-cf", out, "."]);
}

/** Untags other versions of `keep`'s repository (older recipes of the same kind). */
async function removeOldTags(host: string, keep: string): Promise<void> {
  const repo = keep.slice(0, keep.lastIndexOf(":") + 1);
  const r = await docker(host, ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], false);
  const old = r.stdout.split("\n").filter((l) => l.startsWith(repo) && l !== keep);
  for (const ref of old) await docker(host, ["rmi", ref], false);
}
