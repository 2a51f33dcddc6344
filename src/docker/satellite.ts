/**
 * Deploys the packaged satellite (dist/satellite/<arch>/) into a container and starts it.
 */

import { type ContainerInfo, type Engine, partChunks } from "./engine.ts";
import { DockerError, errorMessage } from "./errors.ts";
import type { ExecSession } from "./exec.ts";
import { isCleanRelativePath, readTar, type TarEntry, tarParts } from "./tar.ts";
import { randomHex } from "./bytes.ts";
import { placeOnHost } from "./host_place.ts";
import { DIRECT_TOKEN_CHARS, DIRECT_TOKEN_ENV } from "../protocol/methods.ts";

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
  /** exec user ("name", "uid", "uid:gid", "name:group"); default "0:0" (DEFAULT_EXEC_USER) */
  user?: string;
  onProgress?: (sent: number, total: number) => void;
  /** overrides the random part of the upload dir name (tests) */
  randomName?: () => string;
  /**
   * On a local engine, have the uploaded satellite also offer its direct socket (`--listen`,
   * see src/mount/direct.ts); the session then carries the secret (`directToken`).
   */
  direct?: boolean;
  /**
   * On a local engine, write the bundle's files into the container from the host
   * (src/docker/host_place.ts) when it can; default true. The archive API otherwise.
   */
  placeOnHost?: boolean;
  /** notable choices and steps, for the user's log */
  log?: (message: string) => void;
  /**
   * Called once the engine took the request to run the satellite, while its runtime starts (the
   * start may still fail): work to overlap with that start goes here.
   */
  onStarting?: () => void;
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
  entries.push(...await bundleFileEntries(bundleDir, manifest, `${dirName}/`, owner));
  return entries;
}

/** The bundle's subdirectories (0700) and files (0700/0600) under `prefix`, owned by uid/gid. */
async function bundleFileEntries(
  bundleDir: string,
  manifest: SatelliteManifest,
  prefix: string,
  owner: { uid: number; gid: number },
): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const dirs = new Set<string>();
  for (const file of manifest.files) {
    const parts = file.path.split("/");
    if (!isCleanRelativePath(file.path)) {
      throw new DockerError("bundle", `Cannot use the satellite bundle: bad path '${file.path}'`);
    }
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (dirs.has(dir)) continue;
      dirs.add(dir);
      entries.push({ path: `${prefix}${dir}`, type: "directory", mode: 0o700, ...owner });
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
      path: `${prefix}${file.path}`,
      type: "file",
      mode: privateMode(file.mode),
      source: { length, chunks: () => fileChunks(path), file: path },
      ...owner,
    });
  }
  return entries;
}

/** Where the bundle's compressed archive of build `buildId` is kept (see {@link compressedBundle}). */
export function compressedBundlePath(bundleDir: string, manifest: SatelliteManifest): string {
  return `${bundleDir}/bundle-${manifest.buildId}.tar.gz`;
}

/**
 * The bundle's files as a gzip-compressed tar, entries relative to the satellite's dir and
 * owned by 0:0, made once per build (the build task replaces the bundle dir, and the name holds
 * the build id) next to the bundle. Written under a temporary name, then renamed: concurrent
 * mounts never see half an archive. Undefined when it cannot be written (a read-only install):
 * the caller compresses on the fly as before.
 */
export async function compressedBundle(
  bundleDir: string,
  manifest: SatelliteManifest,
): Promise<string | undefined> {
  if (!/^[0-9A-Za-z_-]+$/.test(manifest.buildId)) return undefined;
  const path = compressedBundlePath(bundleDir, manifest);
  try {
    if ((await Deno.stat(path)).isFile) return path;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) return undefined;
  }
  const entries = await bundleFileEntries(bundleDir, manifest, "", { uid: 0, gid: 0 });
  const tmp = `${path}.tmp-${Deno.pid}-${randomHex()}`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  } catch {
    return undefined;
  }
  try {
    // The stream may read ahead, and source chunks are only valid until the next one: copy.
    await ReadableStream.from(
      (async function* (): AsyncGenerator<Uint8Array<ArrayBuffer>> {
        for await (const chunk of partChunks(tarParts(entries))) yield chunk.slice();
      })(),
    ).pipeThrough(new CompressionStream("gzip")).pipeTo(file.writable);
    await Deno.rename(tmp, path);
    return path;
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    if (error instanceof DockerError) throw error; // the bundle itself cannot be read
    return undefined;
  }
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

/** The satellite's exec user unless told otherwise: numeric, so no /etc/passwd is needed. */
export const DEFAULT_EXEC_USER = "0:0";

const NAME_OR_ID = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** Fields of the line of a passwd/group file whose field `index` equals `value`. */
function findEntry(text: string, index: number, value: string): string[] | undefined {
  return text.split("\n").map((l) => l.split(":")).find((f) => f.length > 2 && f[index] === value);
}

/**
 * The uid/gid the exec user gets, so its private dir can be owned by it. Follows `docker exec
 * --user`: "uid:gid" is used as given (no file read); a uid alone takes its primary group from
 * /etc/passwd, or 0 without an entry; names are looked up in the container's /etc/passwd and
 * /etc/group. A name the container cannot resolve is a DockerError "user" naming it.
 */
export async function resolveUser(
  engine: Engine,
  containerId: string,
  userOrDefault?: string,
  containerName = containerId.slice(0, 12),
): Promise<{ uid: number; gid: number }> {
  const user = userOrDefault || DEFAULT_EXEC_USER;
  const fail = (reason: string): never => {
    throw new DockerError(
      "user",
      `Cannot run the satellite as '${user}' in '${containerName}': ${reason}`,
    );
  };
  const parts = user.split(":");
  const [userPart, groupPart] = parts;
  if (
    parts.length > 2 || !NAME_OR_ID.test(userPart) ||
    (groupPart !== undefined && !NAME_OR_ID.test(groupPart))
  ) {
    fail("not a user name or uid, optionally followed by ':group' or ':gid'");
  }
  const numeric = (part: string): boolean => /^\d+$/.test(part);
  const fileOf = async (path: string, name: string): Promise<string> => {
    const text = await readContainerFile(engine, containerId, path);
    if (text === undefined) {
      fail(
        `the container has no ${path} to look up ${name} (give a numeric uid[:gid] instead, ` +
          `e.g. --user ${DEFAULT_EXEC_USER})`,
      );
    }
    return text!;
  };
  let uid: number;
  let gid: number | undefined;
  if (numeric(userPart)) {
    uid = Number(userPart);
    if (groupPart === undefined) {
      // Like the runtime: the primary group from /etc/passwd when it has the uid, else 0.
      const passwd = await readContainerFile(engine, containerId, "/etc/passwd") ?? "";
      const entry = findEntry(passwd, 2, userPart);
      gid = entry === undefined ? 0 : Number(entry[3]);
    }
  } else {
    const passwd = await fileOf("/etc/passwd", `user '${userPart}'`);
    const entry = findEntry(passwd, 0, userPart) ??
      fail(`no user '${userPart}' in the container's /etc/passwd`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (groupPart !== undefined) {
    if (numeric(groupPart)) {
      gid = Number(groupPart);
    } else {
      const group = await fileOf("/etc/group", `group '${groupPart}'`);
      const entry = findEntry(group, 0, groupPart) ??
        fail(`no group '${groupPart}' in the container's /etc/group`);
      gid = Number(entry[2]);
    }
  }
  if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || uid < 0 || gid! < 0) {
    fail("its /etc/passwd or /etc/group entry has no valid uid/gid");
  }
  return { uid, gid: gid! };
}

/** Where the bundle can be uploaded, best first, and what rules the other places out. */
function uploadPlaces(engine: Engine, container: ContainerInfo, uid: number): string[] {
  if (!container.readOnlyRootfs) {
    if (uid !== 0) return ["/tmp"];
    // Podman's "/" is mode 0555: without CAP_DAC_OVERRIDE the satellite could not remove its
    // directory there, but can from the sticky /tmp (which then shows as changed).
    const rootLast = engine.flavor === "podman" && container.withoutDacOverride === true;
    return rootLast ? ["/tmp", "/"] : ["/", "/tmp"];
  }
  // Read-only rootfs: the archive API only writes into mounts; a noexec tmpfs cannot run it.
  return [
    ...(container.writableMounts ?? []),
    ...(container.tmpfsMounts ?? []).filter((t) => t.exec).map((t) => t.path),
  ];
}

/** Why no upload place worked, and what would. */
function noPlaceReason(
  engine: Engine,
  container: ContainerInfo,
  uid: number,
  lastError: unknown,
): string {
  const tried = lastError !== undefined ? ` (${errorMessage(lastError)})` : "";
  if (!container.readOnlyRootfs) {
    return lastError !== undefined
      ? errorMessage(lastError)
      : `it has no /tmp to upload into for uid ${uid} (run the satellite as root: ` +
        `--user ${DEFAULT_EXEC_USER})`;
  }
  const tmpfs = container.tmpfsMounts ?? [];
  const noexec = tmpfs.filter((t) => !t.exec).map((t) => t.path);
  const listed = noexec.length > 0
    ? ` Its only writable places are noexec tmpfs mounts (${
      [...noexec, "/dev/shm"].join(", ")
    }), from which nothing can be run.`
    : "";
  // Docker extracts archives outside the container's mounts: tmpfs never takes an upload there.
  const tmpfsHint = engine.flavor === "podman"
    ? ", or a tmpfs mount that allows exec (e.g. `--tmpfs /dockerfuse:exec`)"
    : " (Docker cannot upload into tmpfs mounts, with or without exec)";
  return `its root filesystem is read-only and nothing writable could take the upload${tried}.` +
    `${listed} Give the container a writable volume (e.g. \`-v /dockerfuse\`)${tmpfsHint}`;
}

/**
 * Chooses `command` (the container has the arch's glibc loader) or `loaderCommand`, uploads the
 * bundle into a fresh private dir and starts it with `--root <root> --self <dir>`.
 *
 * Location: as root, `/.dockerfuse-<random>` (a new entry directly in "/" leaves nothing in
 * `docker diff` once the satellite removed it; "/" itself is never listed; /tmp would show up as
 * changed). For other users `/tmp/.dockerfuse-<random>` (they cannot remove entries of "/").
 * With a read-only rootfs the engine only extracts into mounts: the first writable volume or
 * bind, else a tmpfs mounted with exec; never a noexec tmpfs (nothing could run from there).
 * Resolves once the runtime started the satellite; its refusal (unknown user, missing loader)
 * is a DockerError "exec" in the runtime's own words, never left to the protocol decoder.
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
  // An empty user (e.g. `-o user=`) means the default, as an absent one does.
  const user = options.user || DEFAULT_EXEC_USER;
  const owner = await resolveUser(engine, container.id, user, container.name);
  const dirName = `.dockerfuse-${(options.randomName ?? randomHex)()}`;
  // Remote engines get the bundle compressed; as root, compressed once (not at every mount):
  // the private dir is made by a tiny plain archive, then the bundle's goes into it.
  const compressed = engine.isRemote && owner.uid === 0 && owner.gid === 0
    ? await compressedBundle(bundleDir, manifest)
    : undefined;
  // A local engine's container, as root: the host makes the private dir and writes into it
  // (falling back to the archive API).
  const hostPid = !engine.isRemote && options.placeOnHost !== false && owner.uid === 0 &&
      owner.gid === 0
    ? container.pid
    : undefined;
  const entries = compressed === undefined
    ? await bundleEntries(bundleDir, manifest, dirName, owner)
    : [{ path: dirName, type: "directory" as const, mode: 0o700, ...owner }];
  let parent: string | undefined;
  let lastError: unknown;
  for (const candidate of uploadPlaces(engine, container, owner.uid)) {
    if (candidate !== "/" && !(await engine.pathExists(container.id, candidate))) continue;
    try {
      if (hostPid !== undefined) {
        const why = await placeOnHost({
          pid: hostPid,
          parent: candidate,
          name: dirName,
          entries: await bundleFileEntries(bundleDir, manifest, "", owner),
          onProgress: options.onProgress,
        });
        if (why === undefined) {
          parent = candidate;
          break;
        }
        options.log?.(`Cannot place the satellite from the host (${why}): uploading it`);
      }
      if (compressed === undefined) {
        await engine.upload(container.id, candidate, entries, { onProgress: options.onProgress });
      } else {
        await engine.upload(container.id, candidate, entries, { gzip: false });
        const dir = candidate === "/" ? `/${dirName}` : `${candidate}/${dirName}`;
        await engine.uploadArchiveFile(container.id, dir, compressed, {
          onProgress: options.onProgress,
        });
      }
      parent = candidate;
      break;
    } catch (error) {
      if (error instanceof DockerError && error.code !== "api") throw error;
      lastError = error;
    }
  }
  if (parent === undefined) {
    throw new DockerError(
      "api",
      `Cannot upload the satellite into '${container.name}': ${
        noPlaceReason(engine, container, owner.uid, lastError)
      }`,
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
  let directToken: string | undefined;
  if (options.direct === true && !engine.isRemote) {
    directToken = randomHex(DIRECT_TOKEN_CHARS / 2);
    env[DIRECT_TOKEN_ENV] = directToken;
    argv.push("--listen");
  }
  try {
    const session = await engine.exec(container.id, argv, {
      user,
      env,
      awaitStart: true,
      onStarting: options.onStarting,
    });
    return directToken === undefined ? session : { ...session, directToken };
  } catch (error) {
    if (!(error instanceof DockerError) || error.code !== "exec") throw error;
    const noexec = /permission denied/i.test(error.reason) && parent !== "/"
      ? ` ('${parent}' may be mounted noexec)`
      : "";
    // Nothing but the satellite itself can remove the upload from inside the container.
    const reason = `${error.reason}${noexec}; its upload '${dir}' is left in the container`;
    throw new DockerError("exec", `Cannot start the satellite in '${container.name}': ${reason}`, {
      cause: error,
      reason,
    });
  }
}
