/**
 * The real Docker test bed: an engine, FUSE tools, qemu for arm64 and four test images
 * built from Debian packages without any registry.
 *
 * @module
 */

import {
  DEFAULT_DOCKER_HOST,
  docker,
  dockerHostFromEnv,
  engineAnswers,
  startPrivateDockerd,
} from "./engine.ts";
import {
  ALL_KINDS,
  buildImage,
  buildNeeds,
  IMAGE_REPO,
  type ImageKind,
  imageRef,
} from "./images.ts";
import { LABEL_SIDECAR } from "../../src/docker/sidecar.ts";
import type { EngineName } from "./shapes.ts";
import {
  copyImagesToPodman,
  ensurePodman,
  PODMAN_HOST,
  PODMAN_RUN_ARGS,
  podmanAnswers,
} from "./podman.ts";
import {
  buildRealImage,
  isRealKind,
  REAL_KINDS,
  realBuildNeeds,
  realImageRef,
  type RealKind,
} from "./real_images.ts";
import {
  Apt,
  binfmtFlags,
  cacheDir,
  ensureQemuAarch64,
  exists,
  hasCachedDeb,
  hasCommand,
  isDebian,
  isRoot,
  lockFile,
  log,
  run,
} from "./system.ts";

export type { ImageKind } from "./images.ts";
export { ALL_KINDS, IMAGE_REPO, KEEP_ALIVE } from "./images.ts";
export { NONROOT_UID, REAL_KINDS, type RealKind } from "./real_images.ts";
export { PODMAN_HOST, PODMAN_RUN_ARGS } from "./podman.ts";
export {
  CAPABILITY_CASES,
  type ContainerShape,
  ENGINE_REFUSED_CASES,
  type EngineName,
  SHAPES,
} from "./shapes.ts";

/** Every image the bed can build: the four classic kinds and the ones shaped like real images. */
export type BedKind = ImageKind | RealKind;
export const EVERY_KIND: readonly BedKind[] = [...ALL_KINDS, ...REAL_KINDS];
export {
  type DataEntry,
  LARGE_FILE_SIZE,
  largeFileBytes,
  smallDataEntries,
  treeEntries,
} from "./data.ts";

export interface TestBed {
  /** DOCKER_HOST-style address of the engine the bed ensured, e.g. "unix:///var/run/docker.sock". */
  readonly dockerHost: string;
  /** which engine answers there */
  readonly engine: EngineName;
  /** image references ("dockerfuse-test/glibc:<recipe-hash>") per kind */
  readonly images: Readonly<Record<BedKind, string>>;
  /** `docker run` arguments every test container of this engine needs */
  readonly runArgs: readonly string[];
}

/** One apt state per process, so `apt-get update` runs at most once (per architecture change). */
const sharedApt = new Apt();

/** Label on every container started by startTestContainer (used by `testbed clean`). */
export const CONTAINER_LABEL = "dockerfuse-testbed=1";

async function allRefs(): Promise<Record<BedKind, string>> {
  const refs = await Promise.all(
    EVERY_KIND.map((k) => isRealKind(k) ? realImageRef(k) : imageRef(k)),
  );
  return Object.fromEntries(EVERY_KIND.map((k, i) => [k, refs[i]])) as Record<BedKind, string>;
}

/** Kinds whose containers run through qemu-aarch64. */
function needsQemu(kinds: readonly BedKind[]): boolean {
  return kinds.includes("arm64") || kinds.includes("arm64-bare");
}

async function presentImages(host: string): Promise<Set<string>> {
  const r = await docker(host, [
    "image",
    "ls",
    "--filter",
    `reference=${IMAGE_REPO}/*`,
    "--format",
    "{{.Repository}}:{{.Tag}}",
  ]);
  return new Set(r.stdout.split("\n").filter((l) => l.length > 0));
}

async function qemuReady(): Promise<boolean> {
  return ((await binfmtFlags("qemu-aarch64")) ?? "").includes("F");
}

/** True when nothing needs doing for these kinds (the fast path). */
async function ready(
  host: string,
  images: Record<BedKind, string>,
  kinds: BedKind[],
): Promise<boolean> {
  if (!(await hasCommand("docker")) || !(await engineAnswers(host))) return false;
  const present = await presentImages(host);
  if (!kinds.every((k) => present.has(images[k]))) return false;
  return !needsQemu(kinds) || await qemuReady();
}

function cannot(reason: string): Error {
  return new Error(`Cannot set up the test bed: ${reason}`);
}

/** Idempotent, fast (< 1 s) when everything is already there; installs/starts/builds otherwise.
 *  Throws an Error with a clear message if the bed cannot be set up. Logs progress to stderr. */
export async function ensureTestBed(options: { kinds?: BedKind[] } = {}): Promise<TestBed> {
  const kinds = options.kinds ?? [...ALL_KINDS];
  const host = dockerHostFromEnv();
  const images = await allRefs();
  const bed: TestBed = { dockerHost: host, engine: "docker", images, runArgs: [] };
  if (await ready(host, images, kinds)) return bed;

  const cache = cacheDir();
  await Deno.mkdir(cache, { recursive: true });
  const lock = await lockFile(`${cache}/lock`);
  try {
    // Another process may have finished the work while we waited for the lock.
    if (await ready(host, images, kinds)) return bed;
    await setUp(host, images, kinds, cache);
  } finally {
    lock.release();
  }
  return bed;
}

async function setUp(
  host: string,
  images: Record<BedKind, string>,
  kinds: BedKind[],
  cache: string,
): Promise<void> {
  const started = Date.now();
  const apt = sharedApt;
  const privileged = isRoot() && await isDebian();
  // A private dockerd is only started on the default socket, never for another DOCKER_HOST.
  const explicitHost = host !== DEFAULT_DOCKER_HOST;

  // 1. Decide everything apt has to do, so it runs once.
  const packages = new Set<string>();
  const haveCli = await hasCommand("docker");
  let engineUp = haveCli && await engineAnswers(host);
  if (!engineUp) {
    if (explicitHost) {
      throw cannot(
        haveCli
          ? `the Docker engine at DOCKER_HOST=${host} does not answer`
          : "no docker CLI on PATH (install docker.io or the Docker CLI)",
      );
    }
    if (!haveCli || !(await hasCommand("dockerd"))) packages.add("docker.io");
  }
  if (!(await hasCommand("fusermount3"))) packages.add("fuse3");

  let present = engineUp ? await presentImages(host) : new Set<string>();
  const missing = kinds.filter((k) => !present.has(images[k]));
  const downloads: { pkg: string; arch: string }[] = [];
  let foreignArch: string | undefined;
  const needKinds = new Set<BedKind>(missing);
  // qemu is needed to run them, built or not
  for (const k of ["arm64", "arm64-bare"] as const) if (kinds.includes(k)) needKinds.add(k);
  for (const kind of needKinds) {
    const needs = isRealKind(kind) ? realBuildNeeds(kind) : await buildNeeds(kind, cache);
    for (const p of needs.packages) if (!(await hasCommand(commandOf(p)))) packages.add(p);
    if (!missing.includes(kind)) continue;
    for (const d of needs.downloads) {
      if (!(await hasCachedDeb(`${cache}/debs`, d.pkg, d.arch))) downloads.push(d);
    }
    if (needs.foreignArch) foreignArch = needs.foreignArch;
  }

  if ((packages.size > 0 || downloads.length > 0) && !privileged) {
    const what = [...packages, ...downloads.map((d) => `${d.pkg}:${d.arch}`)].join(", ");
    throw cannot(
      `missing ${what}; installing them needs root on Debian (run 'deno task testbed ensure' as root)`,
    );
  }
  if (foreignArch && downloads.some((d) => d.arch === foreignArch)) {
    await apt.addArchitecture(foreignArch);
  }
  await apt.install([...packages]);

  // 2. Engine.
  if (!engineUp) {
    if (!privileged) {
      throw cannot(`no Docker engine answers at ${host} and I am not root on Debian`);
    }
    await startPrivateDockerd();
    engineUp = true;
    present = await presentImages(host);
  }

  // 3. qemu for arm64 containers.
  if (needsQemu(kinds) && !(await qemuReady())) {
    if (!isRoot()) throw cannot("qemu-aarch64 is not registered in binfmt_misc (needs root)");
    await ensureQemuAarch64();
  }

  // 4. Images.
  for (const kind of kinds) {
    if (present.has(images[kind])) continue;
    if (isRealKind(kind)) await buildRealImage({ host, cache, apt }, kind, images[kind]);
    else await buildImage({ host, cache, apt }, kind, images[kind]);
  }
  log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/** The command whose presence shows a package is installed. */
function commandOf(pkg: string): string {
  switch (pkg) {
    case "qemu-user-static":
      return "/usr/bin/qemu-aarch64-static";
    case "fuse3":
      return "fusermount3";
    case "docker.io":
      return "dockerd";
    default:
      return pkg;
  }
}

/** Ensures fuse3 (fusermount3) and attr (setfattr) are installed; throws if impossible. */
export async function ensureFuseTools(): Promise<void> {
  // fuse3: fusermount3 for non-root mounts; attr: setfattr/getfattr used by the xattr tests;
  // python3: the client side of the POSIX table (minimal Debian systems lack it).
  const needed: [command: string, pkg: string][] = [
    ["fusermount3", "fuse3"],
    ["setfattr", "attr"],
    ["python3", "python3"],
  ];
  await ensureFuseDevice();
  const missing: string[] = [];
  for (const [command, pkg] of needed) if (!(await hasCommand(command))) missing.push(pkg);
  if (missing.length === 0) return;
  if (!isRoot() || !(await isDebian())) {
    throw new Error(`Cannot find FUSE tools: install ${missing.join(", ")} (needs root on Debian)`);
  }
  await sharedApt.install(missing);
  for (const [command, pkg] of needed) {
    if (!(await hasCommand(command))) {
      throw new Error(`Cannot find ${command} after installing ${pkg}`);
    }
  }
}

/**
 * /dev/fuse usable by unprivileged users (fusermount3), as distributions ship it (0666). As
 * root, a missing device is made: the module loaded (`modprobe fuse`), the node created from
 * the number the kernel announces (/sys/class/misc/fuse/dev) where no udev did it.
 */
async function ensureFuseDevice(): Promise<void> {
  if (isRoot() && !(await exists("/dev/fuse"))) {
    if (!(await exists("/sys/class/misc/fuse")) && await hasCommand("modprobe")) {
      log("modprobe fuse");
      await run("modprobe", ["fuse"], { check: false });
    }
    const numbers = await Deno.readTextFile("/sys/class/misc/fuse/dev").catch(() => "");
    const [major, minor] = numbers.trim().split(":");
    if (major && minor && !(await exists("/dev/fuse"))) {
      log(`mknod /dev/fuse c ${major} ${minor}`);
      await run("mknod", ["-m", "0666", "/dev/fuse", "c", major, minor], { check: false });
    }
  }
  const info = await Deno.stat("/dev/fuse").catch(() => undefined);
  if (!info) throw new Error("Cannot find /dev/fuse: this kernel or container has no FUSE device");
  if ((info.mode! & 0o666) !== 0o666 && isRoot()) await Deno.chmod("/dev/fuse", 0o666);
}

/**
 * docker run -d --network none --name <name> [runArgs] <image> (keep-alive entrypoint per
 * kind); returns the id. `runArgs` go before the image (docker run options), `args` after it
 * (they replace the keep-alive command).
 */
export async function startTestContainer(
  bed: TestBed,
  kind: BedKind,
  options: { name?: string; args?: string[]; runArgs?: string[] } = {},
): Promise<string> {
  const args = ["run", "-d", "--network", "none", "--label", CONTAINER_LABEL, ...bed.runArgs];
  if (kind === "arm64" || kind === "arm64-bare") args.push("--platform", "linux/arm64");
  if (options.name) args.push("--name", options.name);
  args.push(...(options.runArgs ?? []), bed.images[kind], ...(options.args ?? []));
  const r = await docker(bed.dockerHost, args, false);
  if (r.code !== 0) {
    throw new Error(`Cannot start a ${kind} test container: ${r.stderr.trim()}`);
  }
  return r.stdout.trim().split("\n").pop()!;
}

/** docker rm -f -v (with its anonymous volumes); a container that does not exist is no error. */
export async function removeTestContainer(bed: TestBed, idOrName: string): Promise<void> {
  let r = await docker(bed.dockerHost, ["rm", "-f", "-v", idOrName], false);
  if (r.code !== 0 && /dependent containers/i.test(r.stderr)) {
    // Podman keeps a target while a sidecar helper shares its PID namespace; the helper of a
    // mount that just ended may still be going away: remove it first.
    const id = (await docker(bed.dockerHost, ["inspect", "-f", "{{.Id}}", idOrName])).stdout.trim();
    const helpers = (await docker(bed.dockerHost, [
      "ps",
      "-aq",
      "--filter",
      `label=${LABEL_SIDECAR}=${id}`,
    ])).stdout.split("\n").filter((l) => l.length > 0);
    if (helpers.length > 0) await docker(bed.dockerHost, ["rm", "-f", ...helpers], false);
    r = await docker(bed.dockerHost, ["rm", "-f", "-v", idOrName], false);
  }
  if (r.code !== 0 && !/no such container/i.test(r.stderr)) {
    throw new Error(`Cannot remove test container '${idOrName}': ${r.stderr.trim()}`);
  }
}

/**
 * The test bed on Podman: the Docker bed builds the images of `kinds`, Podman (installed and
 * started when missing: apt-get install podman, `podman system service`) gets copies of them.
 * Idempotent, and only a few checks when everything is there.
 */
export async function ensurePodmanBed(options: { kinds?: BedKind[] } = {}): Promise<TestBed> {
  const kinds = options.kinds ?? [...ALL_KINDS];
  const dockerBed = await ensureTestBed({ kinds });
  const podmanBed: TestBed = {
    dockerHost: PODMAN_HOST,
    engine: "podman",
    images: dockerBed.images,
    runArgs: PODMAN_RUN_ARGS,
  };
  const refs = kinds.map((k) => dockerBed.images[k]);
  const cache = cacheDir();
  await Deno.mkdir(cache, { recursive: true });
  const lock = await lockFile(`${cache}/lock`);
  try {
    if (!(await podmanAnswers())) await ensurePodman(sharedApt);
    await copyImagesToPodman(dockerBed.dockerHost, refs);
  } finally {
    lock.release();
  }
  return podmanBed;
}
