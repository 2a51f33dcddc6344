/**
 * Mounting and unmounting: mount(2) on /dev/fuse as root, `fusermount3` otherwise; mountpoint
 * checks and stale-mount recovery.
 *
 * @module
 */

import {
  AF_UNIX,
  MNT_DETACH,
  MS_NODEV,
  MS_NOSUID,
  MS_RDONLY,
  O_CLOEXEC,
  O_RDWR,
  S_IFMT,
  SCM_RIGHTS,
  SOCK_STREAM,
  SOL_SOCKET,
} from "../linux/mod.ts";
import { FuseDevice, spawnReader } from "./device.ts";
import { uringPayloadSize } from "./abi.ts";
import { ENABLE_URING_PARAMETER, uringCpus, UringDevice } from "./uring.ts";
import type { FileSystem } from "./filesystem.ts";
import { cstr, errno, libc, strerror } from "./libc.ts";
import type { FuseSession, MountOptions } from "./options.ts";
import { maxWriteOf, requestBufferSize, Session } from "./session.ts";
import type { Node } from "./filesystem.ts";

/** What is at a mountpoint path. */
export type MountpointState =
  | "empty" // an empty directory: ready to mount on
  | "non-empty" // a directory with entries
  | "missing"
  | "not-directory"
  | "stale" // a FUSE mount whose server is gone (ENOTCONN)
  | "mounted"; // something is mounted there and answers

/** Characters allowed in fsname/subtype (they end up in a comma-separated option string). */
const SAFE_OPTION = /^[A-Za-z0-9._:@/+-]*$/;

function absolute(path: string): string {
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

/** Mount points listed in /proc/self/mountinfo (octal escapes decoded) → filesystem type. */
async function mountPoints(): Promise<Map<string, string>> {
  const map = new Map<string, string>();
  const unescape = (f: string) =>
    f.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  try {
    const text = await Deno.readTextFile("/proc/self/mountinfo");
    for (const line of text.split("\n")) {
      const fields = line.split(" ");
      const sep = fields.indexOf("-");
      if (fields[4] && sep > 0) map.set(unescape(fields[4]), fields[sep + 1] ?? "");
    }
  } catch { /* no /proc: treat as nothing mounted */ }
  return map;
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

async function runFusermount(args: string[], env?: Record<string, string>): Promise<string> {
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

/** Opens /dev/fuse and mounts it at `abs` with mount(2) (root only). */
function mountSyscall(abs: string, opts: MountOptions, rootMode: number): number {
  const c = libc();
  const fd = c.open(cstr("/dev/fuse"), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) throw new Error(`cannot open /dev/fuse: ${strerror(errno())}`);
  const data = [
    `fd=${fd}`,
    `rootmode=${rootMode.toString(8)}`,
    `user_id=${c.geteuid()}`,
    `group_id=${c.getegid()}`,
    ...commonOptions(opts, false),
  ].join(",");
  let flags = 0;
  if (opts.noSuid ?? true) flags |= MS_NOSUID;
  if (opts.noDev ?? true) flags |= MS_NODEV;
  if (opts.readOnly) flags |= MS_RDONLY;
  const type = opts.subtype ? `fuse.${opts.subtype}` : "fuse";
  const r = c.mount(
    cstr(opts.fsName ?? "dockerfuse"),
    cstr(abs),
    cstr(type),
    BigInt(flags),
    cstr(data),
  );
  if (r !== 0) {
    const e = errno();
    c.close(fd);
    throw new Error(`mount(2) failed: ${strerror(e)}`);
  }
  return fd;
}

/** Options understood by both the kernel and fusermount3. */
function commonOptions(opts: MountOptions, forFusermount: boolean): string[] {
  const list: string[] = [];
  if (opts.defaultPermissions ?? true) list.push("default_permissions");
  if (opts.allowOther) list.push("allow_other");
  list.push(`max_read=${Math.min(1 << 20, opts.maxWrite ?? 1 << 20)}`);
  if (forFusermount) {
    list.push(opts.readOnly ? "ro" : "rw");
    if (opts.noSuid ?? true) list.push("nosuid");
    if (opts.noDev ?? true) list.push("nodev");
    list.push(`fsname=${opts.fsName ?? "dockerfuse"}`);
    if (opts.subtype) list.push(`subtype=${opts.subtype}`);
  }
  return list;
}

/** Runs fusermount3 with a socket in `_FUSE_COMMFD` and receives the /dev/fuse fd. */
async function mountFusermount(abs: string, opts: MountOptions): Promise<number> {
  const c = libc();
  const pair = new Int32Array(2);
  if (c.socketpair(AF_UNIX, SOCK_STREAM, 0, new Uint8Array(pair.buffer)) !== 0) {
    throw new Error(`socketpair failed: ${strerror(errno())}`);
  }
  const [ours, theirs] = pair;
  try {
    // The child inherits `theirs` (no CLOEXEC); it sends the device fd over it, then exits.
    await runFusermount(["-o", commonOptions(opts, true).join(","), "--", abs], {
      _FUSE_COMMFD: String(theirs),
    });
  } finally {
    c.close(theirs);
  }
  try {
    return receiveFd(ours);
  } finally {
    c.close(ours);
  }
}

/** recvmsg(2) one SCM_RIGHTS fd (the data is already queued: fusermount3 has exited). */
function receiveFd(sock: number): number {
  const c = libc();
  const data = new Uint8Array(8);
  const iov = new BigUint64Array(2);
  iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data)));
  iov[1] = BigInt(data.length);
  const control = new Uint8Array(64);
  const msg = new DataView(new ArrayBuffer(56));
  // struct msghdr (64-bit): 0 name | 8 namelen | 16 iov | 24 iovlen | 32 control | 40 controllen | 48 flags
  msg.setBigUint64(16, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(iov))), true);
  msg.setBigUint64(24, 1n, true);
  msg.setBigUint64(32, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(control))), true);
  msg.setBigUint64(40, BigInt(control.length), true);
  const MSG_DONTWAIT = 0x40;
  const n = Number(c.recvmsg(sock, new Uint8Array(msg.buffer), MSG_DONTWAIT));
  if (n < 0) throw new Error(`fusermount3 sent no device: ${strerror(errno())}`);
  if (n === 0) throw new Error("fusermount3 sent no device");
  const cv = new DataView(control.buffer);
  const controllen = Number(msg.getBigUint64(40, true));
  // struct cmsghdr: 0 len (u64) | 8 level | 12 type | 16 data
  if (
    controllen < 20 || cv.getInt32(8, true) !== SOL_SOCKET || cv.getInt32(12, true) !== SCM_RIGHTS
  ) {
    throw new Error("fusermount3 sent no device descriptor");
  }
  return cv.getInt32(16, true);
}

class MountedSession implements FuseSession {
  readonly mountpoint: string;
  readonly closed: Promise<void>;
  #session: Session;
  #unmounted = false;
  #connection: number | undefined;

  #rings: UringDevice | undefined;

  constructor(
    mountpoint: string,
    session: Session,
    connection: number | undefined,
    rings: UringDevice | undefined,
  ) {
    this.mountpoint = mountpoint;
    this.#session = session;
    this.closed = session.closed;
    this.#connection = connection;
    this.#rings = rings;
  }

  get ringRequests(): number | undefined {
    return this.#rings?.ringRequests;
  }

  async abort(): Promise<boolean> {
    if (!this.#unmounted) {
      this.#unmounted = true;
      await unmount(this.mountpoint, { lazy: true }).catch(() => {});
    }
    if (this.#connection === undefined) return false;
    try {
      await abortConnection(this.#connection);
    } catch {
      return false;
    }
    await this.closed;
    return true;
  }

  get inFlight(): number {
    return this.#session.inFlight;
  }

  get requests(): number {
    return this.#session.requests;
  }

  async unmount(options: { lazy?: boolean } = {}): Promise<void> {
    if (!this.#unmounted) {
      this.#unmounted = true;
      try {
        await unmount(this.mountpoint, { lazy: options.lazy ?? true });
      } catch (error) {
        this.#unmounted = false;
        throw error;
      }
    }
    await this.closed;
  }

  invalidateEntry(parent: Node, name: string): Promise<boolean> {
    return this.#session.invalidateEntry(parent, name);
  }

  invalidateInode(node: Node, offset?: number, length?: number): Promise<boolean> {
    return this.#session.invalidateInode(node, offset, length);
  }

  storeData(node: Node, offset: number, data: Uint8Array): Promise<boolean> {
    return this.#session.storeData(node, offset, data);
  }

  nodeOf(key: string): Node | undefined {
    return this.#session.nodes.byKey(key);
  }

  childOf(parent: Node, name: string): Node | undefined {
    const dir = this.#session.nodes.get(parent.nodeId);
    return dir === undefined ? undefined : this.#session.nodes.child(dir, name);
  }

  knownNodes(): Node[] {
    return this.#session.nodes.all();
  }
}

/** Read-ahead window of a new mount, KiB (`cat` of 256 MiB: 1.74 s at 128, 1.17 s at 4096). */
const DEFAULT_READ_AHEAD_KB = 4096;
/** See `FuseOptions.readerSpinMicros`. */
const DEFAULT_READER_SPIN_MICROS = 100;

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

/**
 * Mounts `fs` at `mountpoint` and serves it until unmounted. Resolves once the kernel's INIT
 * was answered (the mount answers requests). Throws `Cannot mount '<mountpoint>': reason`
 * for a missing, non-directory, non-empty (unless `allowNonEmpty`), stale or already mounted
 * mountpoint, or when mounting fails.
 */
export async function mount<H>(
  fs: FileSystem<H>,
  mountpoint: string,
  options: MountOptions = {},
): Promise<FuseSession> {
  return await (await prepareMount(mountpoint, options)).mount(fs);
}

/** A mount checked and readied (its reader thread started), not yet made. */
export interface PreparedMount {
  /** Mounts `fs` (once) as `mount()` does, checking the mountpoint again. */
  mount<H>(fs: FileSystem<H>): Promise<FuseSession>;
  /** Releases what was readied when `mount` will not be called; idempotent. */
  cancel(): void;
}

/**
 * What `mount()` does before it has a filesystem to serve: checks the mountpoint, loads libc
 * and starts the reader thread (tens of milliseconds of this thread), so that a caller waiting
 * for something else (the satellite's start) spends that time meanwhile. Throws as `mount()`.
 */
export async function prepareMount(
  mountpoint: string,
  options: MountOptions = {},
): Promise<PreparedMount> {
  const fail = (reason: string): never => {
    throw new Error(`Cannot mount '${mountpoint}': ${reason}`);
  };
  for (const [k, v] of [["fsName", options.fsName], ["subtype", options.subtype]] as const) {
    if (v !== undefined && !SAFE_OPTION.test(v)) fail(`${k} may only contain [A-Za-z0-9._:@/+-]`);
  }
  await checkMountpoint(mountpoint, options);
  const method = options.mountMethod ?? "auto";
  const useSyscall = method === "syscall" || (method === "auto" && libc().geteuid() === 0);
  let reader: Worker | undefined = spawnReader();
  let used = false;
  return {
    mount: async <H>(fs: FileSystem<H>): Promise<FuseSession> => {
      if (used) fail("already mounted once");
      used = true;
      const r = reader;
      reader = undefined;
      return await mountPrepared(fs, mountpoint, options, useSyscall, r);
    },
    cancel: (): void => {
      reader?.terminate();
      reader = undefined;
    },
  };
}

async function mountPrepared<H>(
  fs: FileSystem<H>,
  mountpoint: string,
  options: MountOptions,
  useSyscall: boolean,
  reader: Worker | undefined,
): Promise<FuseSession> {
  const fail = (reason: string): never => {
    reader?.terminate();
    throw new Error(`Cannot mount '${mountpoint}': ${reason}`);
  };
  const abs = absolute(mountpoint);
  let rootMode: number;
  try {
    // Again: time went by since prepareMount.
    await checkMountpoint(mountpoint, options);
    rootMode = (await Deno.stat(abs)).mode! & S_IFMT;
  } catch (error) {
    reader?.terminate();
    throw error;
  }

  // Before mounting: the kernel offers io_uring in the INIT it queues at mount(2).
  const ringCpus = options.ioUring ? await ringCpusFor(options) : undefined;
  let fd: number;
  try {
    fd = useSyscall ? mountSyscall(abs, options, rootMode) : await mountFusermount(abs, options);
  } catch (error) {
    return fail((error as Error).message);
  }
  const fuseDevice = new FuseDevice(fd, {
    slots: options.slots,
    slotSize: requestBufferSize(options),
    spinMicros: options.spinMicros,
    readerSpinMicros: options.readerSpinMicros ?? DEFAULT_READER_SPIN_MICROS,
    reader,
  });
  reader = undefined; // the device's now
  const maxWrite = maxWriteOf(options);
  const rings = ringCpus === undefined ? undefined : new UringDevice(fuseDevice, fd, {
    cpus: ringCpus,
    payloadSize: uringPayloadSize(maxWrite, Math.ceil(maxWrite / 4096)),
    log: (m) => options.logger?.warn(m),
  });
  const session = new Session(fs, rings ?? fuseDevice, options);
  session.start();
  try {
    await session.ready;
  } catch (error) {
    await unmount(abs, { lazy: true }).catch(() => {});
    return fail((error as Error).message);
  }
  if (rings && !await rings.registered()) {
    if (rings.failure) {
      // A ring thread failed before registering: a connection that agreed to io_uring holds
      // every new request until each CPU's ring registered, so this mount would never answer
      // (not even the stat below). Detached here; the connection ends with the process.
      await unmount(abs, { lazy: true }).catch(() => {});
      rings.close();
      return fail(`io_uring rings could not be set up (${strerror(rings.failure)})`);
    }
    options.logger?.warn("FUSE: the kernel did not agree to io_uring: serving /dev/fuse");
  }
  // The fusectl connection id is the minor device number of the mount (for abort()).
  let connection: number | undefined;
  try {
    const dev = (await Deno.stat(abs)).dev;
    connection = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  } catch { /* abort() will report false */ }
  const readAheadKb = options.readAheadKb ?? DEFAULT_READ_AHEAD_KB;
  if (connection !== undefined && readAheadKb > 0) {
    // sysfs is writable by root only: others keep the kernel's window.
    await Deno.writeTextFile(`/sys/class/bdi/0:${connection}/read_ahead_kb`, `${readAheadKb}\n`)
      .catch(() => {});
  }
  return new MountedSession(abs, session as Session, connection, rings?.ready ? rings : undefined);
}

/**
 * The CPUs to serve with io_uring rings when they can be had (switching fuse.enable_uring on as
 * root), else undefined after a warning saying why.
 */
async function ringCpusFor(options: MountOptions): Promise<number | undefined> {
  const read = (): string | undefined => {
    try {
      return Deno.readTextFileSync(ENABLE_URING_PARAMETER);
    } catch {
      return undefined;
    }
  };
  if (read()?.trim() === "N" && libc().geteuid() === 0) {
    try {
      await Deno.writeTextFile(ENABLE_URING_PARAMETER, "Y\n");
      options.logger?.info(`FUSE: switched ${ENABLE_URING_PARAMETER} on for io_uring`);
    } catch (error) {
      options.logger?.warn(`FUSE: cannot switch ${ENABLE_URING_PARAMETER} on: ${error}`);
    }
  }
  const cpus = uringCpus(read);
  if (typeof cpus === "string") {
    options.logger?.warn(`FUSE: no io_uring (${cpus}): serving /dev/fuse`);
    return undefined;
  }
  return cpus;
}
