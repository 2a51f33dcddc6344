/**
 * Mounting: mount(2) on /dev/fuse as root, `fusermount3` otherwise, and the session served on it
 * (mountpoint checks, unmounting and recovery are `mountpoint.ts`).
 *
 * @module
 */

import {
  AF_UNIX,
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
import {
  abortConnection,
  absolute,
  checkMountpoint,
  fuseConnectionAt,
  runFusermount,
  unmount,
} from "./mountpoint.ts";
import type { FuseSession, MountOptions } from "./options.ts";
import { maxWriteOf, requestBufferSize, Session } from "./session.ts";
import type { Node } from "./filesystem.ts";

/** Characters allowed in fsname/subtype (they end up in a comma-separated option string). */
const SAFE_OPTION = /^[A-Za-z0-9._:@/+-]*$/;

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

  invalidateInode(
    node: Node,
    offset?: number,
    length?: number,
    xattrsKept?: boolean,
  ): Promise<boolean> {
    return this.#session.invalidateInode(node, offset, length, xattrsKept);
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
  // For abort() and the read-ahead window; undefined: abort() reports false.
  const connection = await fuseConnectionAt(abs);
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
