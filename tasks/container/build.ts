/**
 * `deno task container-image`: builds the dockerfuse container image (tasks/container/Dockerfile)
 * from locally available pieces only, no registry:
 * - base: the Debian bookworm minbase tarball the test bed's debootstrap cached, imported as
 *   `dockerfuse-base:bookworm` (or, without that tarball, the test bed's glibc image);
 * - tini: `tini-static` from Debian's `tini` package (`apt-get download`, `dpkg-deb -x`), or the
 *   host's /usr/bin/tini-static when apt cannot download;
 * - the project: deno.json, package files, src/, node_modules/ (with the deno binary) and
 *   dist/satellite/ for both architectures (built first when missing).
 *
 * The image is tagged `dockerfuse:<hash of its inputs>` and `dockerfuse:latest`; an image whose
 * inputs have not changed is not rebuilt.
 *
 * @module
 */

import { ensureTestBed } from "../testbed/mod.ts";
import { glibcBaseTarPath } from "../testbed/images.ts";
import { cacheDir, exists, log, run, sha256File, sha256Hex } from "../testbed/system.ts";

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
/** Repository of the image. */
export const IMAGE_NAME = "dockerfuse";
const BASE_REF = "dockerfuse-base:bookworm";
const ARCHES = ["x86_64", "aarch64"];
/** Context members taken from the project, relative to its root. */
const PROJECT_MEMBERS = [
  "deno.json",
  "package.json",
  "package-lock.json",
  "src",
  "node_modules",
  "dist/satellite",
  "tasks/container/Dockerfile",
  "tasks/container/entrypoint.sh",
];

async function imageExists(ref: string): Promise<boolean> {
  return (await run("docker", ["image", "inspect", ref], { check: false })).code === 0;
}

/** The base image reference; imports the cached debootstrap tarball when there is one. */
async function baseImage(): Promise<string> {
  if (await imageExists(BASE_REF)) return BASE_REF;
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const tar = glibcBaseTarPath(cacheDir());
  if (!(await exists(tar))) {
    log(`no ${tar}: using the test bed's glibc image as the base`);
    return bed.images.glibc;
  }
  log(`importing ${tar} as ${BASE_REF}`);
  await run("docker", ["import", tar, BASE_REF]);
  return BASE_REF;
}

/** Path of a static tini taken from Debian's package (cached). */
async function tiniStatic(): Promise<string> {
  const dir = `${cacheDir()}/container`;
  const target = `${dir}/tini-static`;
  if (await exists(target)) return target;
  await Deno.mkdir(dir, { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "dockerfuse-tini-" });
  try {
    const download = await run("apt-get", ["download", "-q", "tini"], { cwd: work, check: false });
    const deb = download.code === 0
      ? [...Deno.readDirSync(work)].find((e) => e.name.endsWith(".deb"))?.name
      : undefined;
    if (deb) {
      await run("dpkg-deb", ["-x", `${work}/${deb}`, `${work}/x`]);
      await Deno.copyFile(`${work}/x/usr/bin/tini-static`, target);
    } else if (await exists("/usr/bin/tini-static")) {
      log("apt-get download tini failed; using the host's /usr/bin/tini-static");
      await Deno.copyFile("/usr/bin/tini-static", target);
    } else {
      throw new Error(
        `Cannot get tini: 'apt-get download tini' failed (${download.stderr.trim()}) ` +
          `and /usr/bin/tini-static is missing`,
      );
    }
    await Deno.chmod(target, 0o755);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
  return target;
}

async function ensureSatellites(): Promise<void> {
  for (const arch of ARCHES) {
    if (await exists(`${ROOT}/dist/satellite/${arch}/manifest.json`)) continue;
    log("building the satellite bundles");
    await run(Deno.execPath(), ["run", "-A", `${ROOT}/tasks/build_satellite.ts`], { cwd: ROOT });
    return;
  }
}

/** Files whose content decides the image (everything but node_modules, named by lock). */
async function inputFiles(): Promise<string[]> {
  const files = [
    "deno.json",
    "package.json",
    "package-lock.json",
    "tasks/container/Dockerfile",
    "tasks/container/entrypoint.sh",
    ...ARCHES.map((a) => `dist/satellite/${a}/manifest.json`),
  ];
  const walk = async (dir: string): Promise<void> => {
    for await (const entry of Deno.readDir(`${ROOT}/${dir}`)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile) files.push(path);
    }
  };
  await walk("src");
  return files.sort();
}

async function imageTag(base: string, tini: string): Promise<string> {
  const parts: string[] = [];
  for (const file of await inputFiles()) {
    parts.push(file, await sha256Hex(await Deno.readFile(`${ROOT}/${file}`)));
  }
  const baseId = (await run("docker", ["image", "inspect", "-f", "{{.Id}}", base])).stdout.trim();
  parts.push(baseId, await sha256File(tini), Deno.version.deno);
  return `${IMAGE_NAME}:${(await sha256Hex(parts.join("\0"))).slice(0, 12)}`;
}

/** Untags earlier builds (an image still used by a container stays). */
async function removeOldTags(keep: string): Promise<void> {
  const r = await run("docker", [
    "image",
    "ls",
    IMAGE_NAME,
    "--format",
    "{{.Repository}}:{{.Tag}}",
  ]);
  const old = r.stdout.split("\n").filter((t) => t && t !== keep && t !== `${IMAGE_NAME}:latest`);
  for (const tag of old) await run("docker", ["rmi", tag], { check: false });
}

/** Builds the image if its inputs changed; returns its reference. */
export async function ensureContainerImage(): Promise<string> {
  await ensureSatellites();
  const base = await baseImage();
  const tini = await tiniStatic();
  const ref = await imageTag(base, tini);
  if (await imageExists(ref)) return ref;
  const started = Date.now();
  log(`building ${ref} from ${base}`);
  // The context is a tar stream: only the listed members, without the second (hard-linked)
  // copy of the deno binary in node_modules/@deno.
  const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;
  const tiniDir = tini.slice(0, tini.lastIndexOf("/"));
  const script = [
    "set -o pipefail",
    `tar -c --exclude=node_modules/@deno -C ${quote(ROOT)} ${PROJECT_MEMBERS.join(" ")} ` +
    `-C ${quote(tiniDir)} tini-static |`,
    `docker build --network none -q -f tasks/container/Dockerfile --build-arg BASE=${
      quote(base)
    } -t ${quote(ref)} -t ${IMAGE_NAME}:latest -`,
  ].join("\n");
  await run("bash", ["-c", script], { timeoutMs: 15 * 60_000 });
  log(`built ${ref} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await removeOldTags(ref);
  return ref;
}

if (import.meta.main) {
  try {
    console.log(await ensureContainerImage());
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(1);
  }
}
