/**
 * Mountpoints: what is at one (inspection), checks before mounting, unmounting, stale-mount
 * recovery and aborting a connection. Light on purpose: it loads none of the FUSE session, so a
 * mount checks its mountpoint before the session's modules are loaded.
 *
 * @module
 */

import { MNT_DETACH, MS_NODEV, MS_NOSUID } from "../linux/mod.ts";
import { cstr, errno, libc, strerror } from "./libc.ts";
import type { MountOptions } from "./options.ts";

/** What is at a mountpoint path. */
export type MountpointState =
  | "empty" // an empty directory: ready to mount on
  | "non-empty" // a directory with entries
  | "missing"
  | "not-directory"
  | "stale" // a FUSE mount whose server is gone (ENOTCONN)
  | "mounted"; // something is mounted there and answers

/** `path` made absolute (against the working directory) and normalized. */
export function absolute(path: string): string {
  if (path.startsWith("/")) return normalize(path);
  return normalize(`${Deno.cwd()}/${path}`);
}

function normalize(path: string): string {
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return "/" + out.join("/");
}

/** One line of /proc/self/mountinfo: where, what type, and the device it shows. */
interface MountInfo {
  path: string;
  type: string;
  major: number;
  minor: number;
}

/** The mounts listed in /proc/self/mountinfo (octal escapes decoded), oldest first. */
async function mountInfo(): Promise<MountInfo[]> {
  const mounts: MountInfo[] = [];
  const unescape = (f: string) =>
    f.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  try {
    const text = await Deno.readTextFile("/proc/self/mountinfo");
    for (const line of text.split("\n")) {
      const fields = line.split(" ");
      const sep = fields.indexOf("-");
      if (!fields[4] || sep <= 0) continue;
      const [major, minor] = (fields[2] ?? "").split(":").map(Number);
      mounts.push({ path: unescape(fields[4]), type: fields[sep + 1] ?? "", major, minor });
    }
  } catch { /* no /proc: treat as nothing mounted */ }
  return mounts;
}

/** Mount points → filesystem type (the last mount made at a path wins). */
async function mountPoints(): Promise<Map<string, string>> {
  return new Map((await mountInfo()).map((m) => [m.path, m.type]));
}

/**
 * The FUSE connection (fusectl's number: the minor device number of an anonymous device) of the
 * FUSE mount last made at absolute path `abs`; read from mountinfo, not by a stat, which the
 * mount's own server would have to answer.
 */
export async function fuseConnectionAt(abs: string): Promise<number | undefined> {
  const found = (await mountInfo()).findLast((m) =>
    m.path === abs && (m.type === "fuse" || m.type.startsWith("fuse."))
  );
  return found !== undefined && found.major === 0 && Number.isSafeInteger(found.minor)
    ? found.minor
    : undefined;
}

function isNotConnected(error: unknown): boolean {
  return (error as { code?: string }).code === "ENOTCONN" ||
    error instanceof Deno.errors.NotConnected;
}

/** Tells what is at `path` (async; safe to call from the process serving a mount there). */
export async function inspectMountpoint(path: string): Promise<MountpointState> {
  const abs = absolute(path);
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(abs);
  } catch (error) {
    if (isNotConnected(error)) return "stale";
    if (error instanceof Deno.errors.NotFound) return "missing";
    throw new Error(`Cannot inspect mountpoint '${path}': ${(error as Error).message}`);
  }
  const type = (await mountPoints()).get(abs);
  if (type !== undefined) {
    // stat may be answered from the kernel's attribute cache; opendir always reaches the server.
    if (type === "fuse" || type.startsWith("fuse.")) {
      try {
        for await (const _ of Deno.readDir(abs)) break;
      } catch (error) {
        if (isNotConnected(error)) return "stale";
      }
    }
    return "mounted";
  }
  if (!info.isDirectory) return "not-directory";
  for await (const _ of Deno.readDir(abs)) return "non-empty";
  return "empty";
}

/** Runs `fusermount3` with `args`; resolves with its stderr, throws with it on failure. */
export async function runFusermount(args: string[], env?: Record<string, string>): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("fusermount3", {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error("fusermount3 is not installed (install the fuse3 package)");
    }
    throw error;
  }
  const text = new TextDecoder().decode(out.stderr).trim();
  if (!out.success) throw new Error(text || `fusermount3 exited with ${out.code}`);
  return text;
}

/**
 * Unmounts `path`: umount2(2) as root (MNT_DETACH when lazy), else `fusermount3 -u [-z]`.
 * Throws `Cannot unmount '<path>': reason`.
 */
export async function unmount(path: string, options: { lazy?: boolean } = {}): Promise<void> {
  const abs = absolute(path);
  if (libc().geteuid() === 0) {
    const r = libc().umount2(cstr(abs), options.lazy ? MNT_DETACH : 0);
    if (r !== 0) {
      const e = errno();
      throw new Error(`Cannot unmount '${path}': ${strerror(e)}`);
    }
    return;
  }
  try {
    await runFusermount(["-u", ...(options.lazy ? ["-z"] : []), "--", abs]);
  } catch (error) {
    throw new Error(`Cannot unmount '${path}': ${(error as Error).message}`);
  }
}

/** Lazily unmounts a stale mount at `path` (see `inspectMountpoint`); no-op otherwise. */
export async function recoverStaleMount(path: string): Promise<boolean> {
  if ((await inspectMountpoint(path)) !== "stale") return false;
  await unmount(path, { lazy: true });
  return true;
}

/** Where fusectl is mounted on hosts set up by systemd (and where the kernel docs put it). */
const FUSECTL = "/sys/fs/fuse/connections";

/** Mount points of fusectl in this mount namespace, the usual one first. */
async function fusectlMounts(): Promise<string[]> {
  const found = [...(await mountPoints())].filter(([, type]) => type === "fusectl").map(([p]) => p);
  return found.sort((a, b) => Number(b === FUSECTL) - Number(a === FUSECTL));
}

async function writeAbort(dir: string, connection: number): Promise<void> {
  await Deno.writeTextFile(`${dir}/${connection}/abort`, "1");
}

/**
 * Aborts FUSE connection `connection` (fusectl's name for it: the kernel's device number of the
 * mount): its requests fail, open files then get ENOTCONN and the server sees the device end.
 * Uses fusectl wherever it is mounted; where it is not (fresh VMs, containers, minimal hosts)
 * and we are root, mounts a private fusectl for the moment of the write and unmounts it, so the
 * host is left as it was. Throws `Cannot abort FUSE connection N: reason`.
 */
export async function abortConnection(connection: number): Promise<void> {
  const fail = (reason: string): never => {
    throw new Error(`Cannot abort FUSE connection ${connection}: ${reason}`);
  };
  let lastError: unknown;
  for (const dir of await fusectlMounts()) {
    try {
      return await writeAbort(dir, connection);
    } catch (error) {
      lastError = error;
    }
  }
  if (lastError !== undefined) fail((lastError as Error).message);
  if (libc().geteuid() !== 0) {
    fail(`fusectl is not mounted (as root: mount -t fusectl fusectl ${FUSECTL})`);
  }
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-fusectl-" });
  try {
    const c = libc();
    const flags = BigInt(MS_NOSUID | MS_NODEV);
    if (c.mount(cstr("fusectl"), cstr(dir), cstr("fusectl"), flags, cstr("")) !== 0) {
      fail(`fusectl is not mounted and mounting it failed: ${strerror(errno())}`);
    }
    try {
      await writeAbort(dir, connection);
    } catch (error) {
      fail((error as Error).message);
    } finally {
      c.umount2(cstr(dir), MNT_DETACH);
    }
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

/**
 * Throws `Cannot mount '<mountpoint>': reason` unless `mountpoint` is a directory one can mount
 * on: existing, not mounted or stale, and empty unless `allowNonEmpty`.
 */
export async function checkMountpoint(
  mountpoint: string,
  options: Pick<MountOptions, "allowNonEmpty"> = {},
): Promise<void> {
  const fail = (reason: string): never => {
    throw new Error(`Cannot mount '${mountpoint}': ${reason}`);
  };
  const state = await inspectMountpoint(mountpoint).catch((e) => fail((e as Error).message));
  if (state === "missing") fail("no such directory (create it first)");
  if (state === "not-directory") fail("not a directory");
  if (state === "stale") {
    fail("a stale FUSE mount is there (unmount it first, e.g. recoverStaleMount)");
  }
  if (state === "mounted") fail("something is already mounted there (unmount it first)");
  if (state === "non-empty" && !options.allowNonEmpty) {
    fail("the directory is not empty (the nonempty option mounts over it)");
  }
}
