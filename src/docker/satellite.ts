/**
 * Deploys the packaged satellite (dist/satellite/<arch>/) into a container and starts it.
 */

import type { ContainerInfo, Engine } from "./engine.ts";
import { DockerError, errorMessage } from "./errors.ts";
import type { ExecSession } from "./exec.ts";
import { readTar, type TarEntry } from "./tar.ts";

export interface SatelliteManifest {
  formatVersion: 1;
  arch: "x86_64" | "aarch64";
  mode: "runtime" | "compiled";
  buildId: string;
  files: { path: string; mode: number }[];
  command: string[];
  loaderCommand: string[];
  glibcProbe: string[];
  env: Record<string, string>;
}

export interface DeployOptions {
  /** directory inside the container the satellite serves (its --root) */
  root: string;
  /** exec user ("name", "uid", "uid:gid", "name:group"); default the container's user */
  user?: string;
  onProgress?: (sent: number, total: number) => void;
  /** overrides the random part of the upload dir name (tests) */
  randomName?: () => string;
}

/** Reads and checks a manifest.json. Throws DockerError("bundle") with a clear message. */
export async function readManifest(bundleDir: string): Promise<SatelliteManifest> {
  const path = `${bundleDir}/manifest.json`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new DockerError(
      "bundle",
      `Cannot read the satellite bundle '${path}': ${
        error instanceof Deno.errors.NotFound
          ? "it does not exist (run `deno task build-satellite`)"
          : errorMessage(error)
      }`,
    );
  }
  const m = parsed as Partial<SatelliteManifest>;
  const strings = (value: unknown): boolean =>
    Array.isArray(value) && value.every((s) => typeof s === "string");
  if (
    m?.formatVersion !== 1 || (m.arch !== "x86_64" && m.arch !== "aarch64") ||
    !Array.isArray(m.files) ||
    !m.files.every((f) => typeof f?.path === "string" && typeof f?.mode === "number") ||
    !strings(m.command) || !strings(m.loaderCommand) || !strings(m.glibcProbe) ||
    typeof m.env !== "object" || m.env === null || m.command!.length === 0 ||
    m.loaderCommand!.length === 0
  ) {
    throw new DockerError(
      "bundle",
      `Cannot use the satellite bundle '${path}': not a format 1 manifest`,
    );
  }
  return m as SatelliteManifest;
}

function randomHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Satellite files get 0700 when executable, else 0600. */
function privateMode(mode: number): number {
  return (mode & 0o111) !== 0 ? 0o700 : 0o600;
}

/**
 * Builds the tar entries for a bundle under `dirName`: the private dir (0700), its
 * subdirectories (0700) and the files (0700/0600), owned by uid/gid.
 */
export async function bundleEntries(
  bundleDir: string,
  manifest: SatelliteManifest,
  dirName: string,
  owner: { uid: number; gid: number },
): Promise<TarEntry[]> {
  const entries: TarEntry[] = [{ path: dirName, type: "directory", mode: 0o700, ...owner }];
  const dirs = new Set<string>();
  for (const file of manifest.files) {
    const parts = file.path.split("/");
    if (file.path.startsWith("/") || parts.some((p) => p === ".." || p === "" || p === ".")) {
      throw new DockerError("bundle", `Cannot use the satellite bundle: bad path '${file.path}'`);
    }
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      entries.push({ path: `${dirName}/${dir}`, type: "directory", mode: 0o700, ...owner });
    }
    // Read while uploading: the bundle (~100 MB) never sits in memory whole.
    const path = `${bundleDir}/${file.path}`;
    let length: number;
    try {
      length = (await Deno.stat(path)).size;
    } catch (error) {
      throw new DockerError(
        "bundle",
        `Cannot read satellite file '${bundleDir}/${file.path}': ${errorMessage(error)}`,
      );
    }
    entries.push({
      path: `${dirName}/${file.path}`,
      type: "file",
      mode: privateMode(file.mode),
      source: { length, chunks: () => fileChunks(path) },
      ...owner,
    });
  }
  return entries;
}

async function* fileChunks(path: string): AsyncGenerator<Uint8Array> {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch (error) {
    throw new DockerError("bundle", `Cannot read satellite file '${path}': ${errorMessage(error)}`);
  }
  // Synchronous reads into one reused buffer (a TarSource chunk is valid until the next one is
  // asked for): async reads run on the blocking thread pool, whose malloc arenas, with the
  // garbage buffers, kept ~60 MB of the bundle in the client's RSS (measured).
  const buffer = new Uint8Array(1024 * 1024);
  try {
    while (true) {
      const n = file.readSync(buffer);
      if (n === null) return;
      yield buffer.subarray(0, n);
    }
  } finally {
    file.close();
  }
}

/** Reads a small file from the container through the archive API; undefined if absent. */
async function readContainerFile(
  engine: Engine,
  containerId: string,
  path: string,
): Promise<string | undefined> {
  const archive = await engine.download(containerId, path, 1024 * 1024);
  if (archive === undefined) return undefined;
  const file = readTar(archive).find((f) => f.typeflag === "0" || f.typeflag === "\0");
  return file === undefined ? undefined : new TextDecoder().decode(file.data);
}

/**
 * The uid/gid the exec user gets, so its private dir can be owned by it. Numeric ids are used
 * as given; names are looked up in the container's /etc/passwd and /etc/group.
 */
export async function resolveUser(
  engine: Engine,
  containerId: string,
  user: string | undefined,
): Promise<{ uid: number; gid: number }> {
  if (user === undefined || user === "" || user === "root" || user === "0") {
    return { uid: 0, gid: 0 };
  }
  const [userPart, groupPart] = user.split(":", 2);
  let uid: number | undefined;
  let gid: number | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
  }
  if (uid === undefined || (groupPart === undefined)) {
    const passwd = await readContainerFile(engine, containerId, "/etc/passwd") ?? "";
    const line = passwd.split("\n").map((l) => l.split(":")).find((f) =>
      uid === undefined ? f[0] === userPart : f[2] === String(uid)
    );
    if (line !== undefined) {
      uid = Number(line[2]);
      gid = Number(line[3]);
    } else if (uid === undefined) {
      throw new DockerError(
        "user",
        `Cannot run the satellite as '${user}': no user '${userPart}' in the container's /etc/passwd`,
      );
    }
  }
  if (groupPart !== undefined && groupPart !== "") {
    if (/^\d+$/.test(groupPart)) {
      gid = Number(groupPart);
    } else {
      const group = await readContainerFile(engine, containerId, "/etc/group") ?? "";
      const line = group.split("\n").map((l) => l.split(":")).find((f) => f[0] === groupPart);
      if (line === undefined) {
        throw new DockerError(
          "user",
          `Cannot run the satellite as '${user}': no group '${groupPart}' in the container's /etc/group`,
        );
      }
      gid = Number(line[2]);
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid ?? uid)) {
    throw new DockerError("user", `Cannot run the satellite as '${user}': bad uid/gid`);
  }
  return { uid: uid!, gid: gid ?? uid! };
}

/**
 * Chooses `command` (the container has the arch's glibc loader) or `loaderCommand`, uploads the
 * bundle into a fresh private dir and starts it with `--root <root> --self <dir>`.
 *
 * Location: as root, `/.dockerfuse-<random>` (a new entry directly in "/" leaves nothing in
 * `docker diff` once the satellite removed it; "/" itself is never listed; /tmp would show up as
 * changed). For other users `/tmp/.dockerfuse-<random>` (they cannot remove entries of "/").
 * With a read-only rootfs the engine only extracts into volumes: the first writable mount.
 */
export async function deploySatellite(
  engine: Engine,
  container: ContainerInfo,
  bundleDir: string,
  options: DeployOptions,
): Promise<ExecSession> {
  const manifest = await readManifest(bundleDir);
  if (manifest.arch !== container.arch) {
    throw new DockerError(
      "unsupported",
      `Cannot start the satellite in '${container.name}': the bundle is for ${manifest.arch}, the container is ${container.arch}`,
    );
  }
  let hasGlibc = false;
  for (const probe of manifest.glibcProbe) {
    if (await engine.pathExists(container.id, probe)) {
      hasGlibc = true;
      break;
    }
  }
  const owner = await resolveUser(engine, container.id, options.user);
  const dirName = `.dockerfuse-${(options.randomName ?? randomHex)()}`;
  const entries = await bundleEntries(bundleDir, manifest, dirName, owner);
  // Read-only rootfs: the archive API only writes into volumes, so try the writable mounts.
  const parents = container.readOnlyRootfs
    ? [...(container.writableMounts ?? [])]
    : owner.uid === 0
    ? ["/", "/tmp"]
    : ["/tmp"];
  let parent: string | undefined;
  let lastError: unknown;
  for (const candidate of parents) {
    if (candidate !== "/" && !(await engine.pathExists(container.id, candidate))) continue;
    try {
      await engine.upload(container.id, candidate, entries, { onProgress: options.onProgress });
      parent = candidate;
      break;
    } catch (error) {
      if (error instanceof DockerError && error.code !== "api") throw error;
      lastError = error;
    }
  }
  if (parent === undefined) {
    const why = lastError !== undefined
      ? errorMessage(lastError)
      : container.readOnlyRootfs
      ? "its root filesystem is read-only and it has no writable volume to upload into"
      : "it has no /tmp to upload into for a non-root user";
    throw new DockerError(
      "api",
      `Cannot upload the satellite into '${container.name}': ${why}`,
      { cause: lastError },
    );
  }
  const dir = parent === "/" ? `/${dirName}` : `${parent}/${dirName}`;
  const argv = (hasGlibc ? manifest.command : manifest.loaderCommand)
    .map((arg) => arg.replaceAll("{dir}", dir));
  argv.push("--root", options.root, "--self", dir);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(manifest.env)) {
    env[key] = value.replaceAll("{dir}", dir);
  }
  return await engine.exec(container.id, argv, { user: options.user, env });
}
