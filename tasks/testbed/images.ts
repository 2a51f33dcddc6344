/**
 * Recipes of the four test images, built without any registry from Debian packages.
 * An image's tag is a hash over this recipe code, so images are rebuilt only when it changes.
 */

import {
  LARGE_FILE_SIZE,
  smallDataEntries,
  treeEntries,
  writeEntries,
  writeLargeFile,
} from "./data.ts";
import { docker } from "./engine.ts";
import { pauseElf } from "./pause_elf.ts";
import {
  type Apt,
  debianMirror,
  exists,
  log,
  removeTree,
  run,
  sha256File,
  sha256Hex,
  unmountBelow,
} from "./system.ts";

export type ImageKind = "glibc" | "musl" | "static" | "arm64";
export const ALL_KINDS: readonly ImageKind[] = ["glibc", "musl", "static", "arm64"];
export const IMAGE_REPO = "dockerfuse-test";

const PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Keep-alive command per kind (the image's CMD; `docker run` args replace it). */
export const KEEP_ALIVE: Readonly<Record<ImageKind, string[]>> = {
  glibc: ["/usr/bin/sleep", "infinity"],
  musl: ["/bin/sleep", "2147483647"],
  static: ["/pause"],
  arm64: ["/bin/sleep", "2147483647"],
};

/** debootstrap invocation of the glibc base (its tarball is cached under this recipe). */
const GLIBC_BASE = { suite: "bookworm", variant: "minbase" };

const RECIPE_FILES = ["images.ts", "data.ts", "pause_elf.ts"];

/** Image reference of `kind` for the current recipe, e.g. "dockerfuse-test/glibc:0123abcd4567". */
export async function imageRef(kind: ImageKind): Promise<string> {
  const sources = await Promise.all(
    RECIPE_FILES.map((f) => Deno.readTextFile(new URL(f, import.meta.url))),
  );
  const hash = await sha256Hex([kind, ...sources].join("\0"));
  return `${IMAGE_REPO}/${kind}:${hash.slice(0, 12)}`;
}

/** What a build needs from the host (decided before one batched apt run). */
export interface BuildNeeds {
  packages: string[];
  downloads: { pkg: string; arch: string }[];
  foreignArch?: string;
}

export function glibcBaseTarPath(cache: string): string {
  return `${cache}/glibc-base-${GLIBC_BASE.suite}-${GLIBC_BASE.variant}.tar`;
}

/** Host packages and .deb downloads the build of `kind` requires. */
export async function buildNeeds(kind: ImageKind, cache: string): Promise<BuildNeeds> {
  switch (kind) {
    case "glibc":
      return {
        packages: (await exists(glibcBaseTarPath(cache))) ? [] : ["debootstrap"],
        downloads: [],
      };
    case "musl":
      return {
        packages: [],
        downloads: [{ pkg: "busybox-static", arch: "amd64" }, { pkg: "musl", arch: "amd64" }],
      };
    case "static":
      return { packages: [], downloads: [] };
    case "arm64":
      return {
        packages: ["qemu-user-static"],
        downloads: [{ pkg: "busybox-static", arch: "arm64" }],
        foreignArch: "arm64",
      };
  }
}

export interface BuildContext {
  host: string;
  cache: string;
  apt: Apt;
}

/** Builds the image of `kind` and tags it `ref`; removes older tags of the same kind. */
export async function buildImage(ctx: BuildContext, kind: ImageKind, ref: string): Promise<void> {
  const started = Date.now();
  log(`building ${ref}`);
  const dir = `${ctx.cache}/build-${kind}`;
  await removeTree(dir);
  await Deno.mkdir(dir, { recursive: true });
  try {
    switch (kind) {
      case "glibc":
        await buildGlibc(ctx, dir, ref);
        break;
      case "musl":
        await buildMusl(ctx, dir, ref);
        break;
      case "static":
        await buildStatic(ctx, dir, ref);
        break;
      case "arm64":
        await buildArm64(ctx, dir, ref);
        break;
    }
  } finally {
    await removeTree(dir);
  }
  await removeOldTags(ctx.host, ref);
  log(`built ${ref} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** Untags other versions of `keep`'s repository (older recipes of the same kind). */
async function removeOldTags(host: string, keep: string): Promise<void> {
  const repo = keep.slice(0, keep.lastIndexOf(":") + 1);
  const r = await docker(host, ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"], false);
  const old = r.stdout.split("\n").filter((l) => l.startsWith(repo) && l !== keep);
  for (const ref of old) await docker(host, ["rmi", ref], false);
}

/** Archives `dir` (or only `members` of it, appended to `out`) with numeric owners. */
function tarDir(dir: string, out: string, members?: string[]): Promise<unknown> {
  const mode = members ? "-rf" : "-cf";
  return run("tar", ["--numeric-owner", "-C", dir, mode, out, ...(members ?? ["."])]);
}

async function importTar(host: string, tar: string, ref: string, cmd: string[]): Promise<void> {
  await docker(host, [
    "import",
    "--change",
    `ENV ${PATH_ENV}`,
    "--change",
    `CMD ${JSON.stringify(cmd)}`,
    tar,
    ref,
  ]);
}

async function glibcBaseTar(cache: string): Promise<string> {
  const path = glibcBaseTarPath(cache);
  if (await exists(path)) return path;
  const mirror = await debianMirror();
  const root = `${cache}/build-debootstrap`;
  await removeTree(root);
  log(`debootstrap --variant=${GLIBC_BASE.variant} ${GLIBC_BASE.suite} from ${mirror}`);
  const debs = `${cache}/debootstrap-debs`;
  await Deno.mkdir(debs, { recursive: true });
  try {
    await run("debootstrap", [
      `--variant=${GLIBC_BASE.variant}`,
      `--cache-dir=${debs}`,
      GLIBC_BASE.suite,
      root,
      mirror,
    ]);
    await unmountBelow(root);
    // Downloaded package files and lists are not part of the image.
    await run("sh", [
      "-c",
      `rm -rf ${root}/var/cache/apt/archives/*.deb ${root}/var/lib/apt/lists/*`,
    ]);
    await tarDir(root, `${path}.tmp`);
    await Deno.rename(`${path}.tmp`, path);
  } finally {
    await removeTree(root);
  }
  return path;
}

async function buildGlibc(ctx: BuildContext, dir: string, ref: string): Promise<void> {
  const base = await glibcBaseTar(ctx.cache);
  const tar = `${dir}/image.tar`;
  await Deno.copyFile(base, tar);
  const extra = `${dir}/extra`;
  await writeEntries(`${extra}/data`, [...smallDataEntries("glibc"), ...treeEntries()]);
  await writeLargeFile(`${extra}/data/large.bin`);
  const sum = await sha256File(`${extra}/data/large.bin`);
  await Deno.writeTextFile(`${extra}/data/large.bin.sha256`, `${sum}  large.bin\n`);
  const size = (await Deno.stat(`${extra}/data/large.bin`)).size;
  if (size !== LARGE_FILE_SIZE) throw new Error(`Cannot build glibc image: large.bin is ${size} B`);
  await tarDir(extra, tar, ["data"]); // the base already has "./"
  await importTar(ctx.host, tar, ref, KEEP_ALIVE.glibc);
}

/** /etc/passwd, /etc/group, /tmp and /data common to the small images. */
async function writeSkeleton(root: string, kind: ImageKind, shell: string): Promise<void> {
  await Deno.mkdir(`${root}/etc`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/etc/passwd`,
    `root:x:0:0:root:/root:${shell}\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n`,
  );
  await Deno.writeTextFile(`${root}/etc/group`, "root:x:0:\nnogroup:x:65534:\n");
  for (const d of ["tmp", "root", "proc", "sys", "dev"]) {
    await Deno.mkdir(`${root}/${d}`, { recursive: true });
  }
  await Deno.chmod(`${root}/tmp`, 0o1777);
  await Deno.chmod(`${root}/root`, 0o700);
  await writeEntries(`${root}/data`, smallDataEntries(kind));
}

/** Puts busybox from a busybox-static .deb into root/bin with one symlink per applet. */
async function installBusybox(deb: string, dir: string, root: string, runner: string[]) {
  await run("dpkg-deb", ["-x", deb, `${dir}/busybox-deb`]);
  await Deno.mkdir(`${root}/bin`, { recursive: true });
  await Deno.copyFile(`${dir}/busybox-deb/bin/busybox`, `${root}/bin/busybox`);
  await Deno.chmod(`${root}/bin/busybox`, 0o755);
  const [cmd, ...pre] = [...runner, `${root}/bin/busybox`];
  const list = (await run(cmd, [...pre, "--list"])).stdout.split("\n").filter((a) =>
    /^[a-z0-9_.[-]+$/i.test(a) && a !== "busybox"
  );
  for (const applet of list) await Deno.symlink("busybox", `${root}/bin/${applet}`);
}

async function buildMusl(ctx: BuildContext, dir: string, ref: string): Promise<void> {
  const debs = `${ctx.cache}/debs`;
  const busybox = await ctx.apt.download("busybox-static", "amd64", debs);
  const musl = await ctx.apt.download("musl", "amd64", debs);
  const root = `${dir}/rootfs`;
  await installBusybox(busybox, dir, root, []);
  // The musl package brings /lib/ld-musl-x86_64.so.1 and its libc; no glibc at all.
  await run("dpkg-deb", ["-x", musl, root]);
  if (!(await exists(`${root}/lib/ld-musl-x86_64.so.1`))) {
    throw new Error("Cannot build musl image: the musl package has no /lib/ld-musl-x86_64.so.1");
  }
  await writeSkeleton(root, "musl", "/bin/sh");
  await tarDir(root, `${dir}/image.tar`);
  await importTar(ctx.host, `${dir}/image.tar`, ref, KEEP_ALIVE.musl);
}

async function buildStatic(ctx: BuildContext, dir: string, ref: string): Promise<void> {
  const root = `${dir}/rootfs`;
  await Deno.mkdir(root, { recursive: true });
  await Deno.writeFile(`${root}/pause`, pauseElf(), { mode: 0o755 });
  await Deno.chmod(`${root}/pause`, 0o755);
  await writeSkeleton(root, "static", "/sbin/nologin");
  await tarDir(root, `${dir}/image.tar`);
  await importTar(ctx.host, `${dir}/image.tar`, ref, KEEP_ALIVE.static);
}

/**
 * `docker import --platform` leaves the architecture amd64 on this engine, so the arm64
 * image is written in `docker save` layout with our own config and loaded.
 */
async function buildArm64(ctx: BuildContext, dir: string, ref: string): Promise<void> {
  const busybox = await ctx.apt.download("busybox-static", "arm64", `${ctx.cache}/debs`);
  const root = `${dir}/rootfs`;
  await installBusybox(busybox, dir, root, ["/usr/bin/qemu-aarch64-static"]);
  await writeSkeleton(root, "arm64", "/bin/sh");
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
    config: { Env: [PATH_ENV], Cmd: KEEP_ALIVE.arm64 },
    rootfs: { type: "layers", diff_ids: [`sha256:${diffId}`] },
    history: [{ created, created_by: "dockerfuse test bed: busybox-static:arm64" }],
  });
  const configName = `${await sha256Hex(config)}.json`;
  await Deno.writeTextFile(`${load}/${configName}`, config);
  await Deno.writeTextFile(
    `${load}/manifest.json`,
    JSON.stringify([{ Config: configName, RepoTags: [ref], Layers: ["layer/layer.tar"] }]),
  );
  await tarDir(load, `${dir}/image.tar`);
  await docker(ctx.host, ["load", "-i", `${dir}/image.tar`]);
}
