/**
 * Options of a FUSE mount and the handle of a running session.
 *
 * @module
 */

import type { Logger, Node } from "./filesystem.ts";

/** Options for `mount()`. Timeouts are in seconds. */
export interface MountOptions {
  /** `fsname` shown in /proc/mounts (default "dockerfuse"). */
  fsName?: string;
  /** `subtype` shown as fuse.<subtype> (default none). */
  subtype?: string;
  readOnly?: boolean;
  /** Let other users access the mount (non-root needs user_allow_other in /etc/fuse.conf). */
  allowOther?: boolean;
  /** Kernel-side permission checks from mode/uid/gid (default true). */
  defaultPermissions?: boolean;
  /** nosuid (default true). */
  noSuid?: boolean;
  /** nodev (default true). */
  noDev?: boolean;
  /** Mount over a non-empty directory instead of refusing (default false). */
  allowNonEmpty?: boolean;
  /** Default name cache timeout (default 1). */
  entryTimeout?: number;
  /** Default attribute cache timeout (default 1). */
  attrTimeout?: number;
  /** Cache ENOENT from lookup this long (default 0: no negative caching). */
  negativeTimeout?: number;
  /** Kernel writeback cache (FUSE_WRITEBACK_CACHE); default false. */
  writebackCache?: boolean;
  /**
   * The kernel keeps symlink targets in its page cache (FUSE_CACHE_SYMLINKS) until the inode's
   * data is invalidated; default false.
   */
  cacheSymlinks?: boolean;
  /**
   * POSIX ACLs in the kernel (FUSE_POSIX_ACL): permission checks honour the access ACLs the
   * filesystem stores in `system.posix_acl_*`, and the kernel caches them with the attributes
   * (dropped when those are refreshed or invalidated). Implies default permissions; default false.
   */
  posixAcl?: boolean;
  /** Largest WRITE payload (default and maximum 1 MiB). */
  maxWrite?: number;
  /** Largest readahead the kernel may do (default 1 MiB). */
  maxReadahead?: number;
  /**
   * Read-ahead window (KiB) set for the mount in /sys/class/bdi after mounting, where allowed
   * (root): the kernel starts FUSE mounts at 128 KiB whatever INIT asks. Default 4096; 0 leaves it.
   */
  readAheadKb?: number;
  /** Kernel limit on background requests (default 64). */
  maxBackground?: number;
  /** Requests the reader may read ahead of the handlers (default 16, each max_write + 8 KiB). */
  slots?: number;
  /**
   * After a burst of requests, keep checking for the next one on the JS thread this long (µs)
   * before sleeping: lower latency for back-to-back requests on idle-prone VMs, at the cost of
   * CPU. Default 0.
   */
  spinMicros?: number;
  /**
   * After answering a request itself (cached attributes, opens, no xattrs), the device's reader
   * thread keeps polling for the next one this long (µs) before sleeping: a process served from
   * the caches sends it within microseconds, and waking a sleeping thread costs more than the
   * answer. Default 100; 0 sleeps at once.
   */
  readerSpinMicros?: number;
  /**
   * Serve requests through one io_uring ring per CPU (FUSE over io_uring, Linux 6.14+): a
   * request is answered on the CPU of the process that made it. Needs the module parameter
   * fuse.enable_uring, which is switched on when off and running as root; where rings cannot be
   * had the mount serves /dev/fuse and says why. Default false.
   */
  ioUring?: boolean;
  /**
   * How to mount: "auto" (mount(2) as root, else fusermount3), "syscall", or "fusermount".
   */
  mountMethod?: "auto" | "syscall" | "fusermount";
  /** Receives warnings, errors and (with `debug`) the rx/tx trace. Default: silent. */
  logger?: Logger;
  /** Trace one `rx` and one `tx` line per request through `logger.debug`. */
  debug?: boolean;
}

/** A mounted, serving FUSE session. */
export interface FuseSession {
  readonly mountpoint: string;
  /** Resolves when the session ended (unmounted by us or by anyone else); never rejects. */
  readonly closed: Promise<void>;
  /** Number of requests being handled right now. */
  readonly inFlight: number;
  /** Requests handled so far (those the reader thread answers itself not counted). */
  readonly requests: number;
  /** Requests that came through io_uring rings so far (undefined: the mount serves /dev/fuse). */
  readonly ringRequests: number | undefined;
  /**
   * Unmount: lazy (MNT_DETACH / `fusermount3 -u -z`) by default, then waits for `closed`.
   * Idempotent.
   */
  unmount(options?: { lazy?: boolean }): Promise<void>;
  /**
   * Ends the session even while files are open: lazy unmount, then abort the connection
   * through fusectl (`abortConnection`: a mounted fusectl, else as root a private one). Open
   * files then fail with ENOTCONN. Resolves true once `closed` resolved, false if fusectl was
   * not usable (then only the lazy unmount happened; exiting the process also ends it).
   */
  abort(): Promise<boolean>;
  /**
   * Ask the kernel to drop its cached name (parent, name) (FUSE_NOTIFY_INVAL_ENTRY). Written
   * from a worker thread, so it is safe to call from inside a request handler; resolves true
   * if the kernel accepted it (false also when it had nothing cached).
   */
  invalidateEntry(parent: Node, name: string): Promise<boolean>;
  /**
   * Ask the kernel to drop cached attributes and, for the byte range (offset, length; length 0
   * = to the end, offset -1 = attributes only), cached data of `node` (FUSE_NOTIFY_INVAL_INODE).
   * Like `invalidateEntry`, safe inside handlers; resolves true if the kernel accepted it.
   * `xattrsKept`: the change was of contents only (which never adds an extended attribute), so
   * a node known to have none keeps its GETXATTRs answered without the filesystem.
   */
  invalidateInode(
    node: Node,
    offset?: number,
    length?: number,
    xattrsKept?: boolean,
  ): Promise<boolean>;
  /**
   * Put `data` into the kernel's page cache of `node` at `offset` (FUSE_NOTIFY_STORE): reads of
   * it are then answered by the kernel. Resolves true if the kernel accepted it.
   */
  storeData(node: Node, offset: number, data: Uint8Array): Promise<boolean>;
  /** The node the kernel holds for identity `key` (`Entry.key`; "" is the root), if any. */
  nodeOf(key: string): Node | undefined;
  /** The node known at (parent, name), if any. */
  childOf(parent: Node, name: string): Node | undefined;
  /** Every node the kernel holds, but the root. */
  knownNodes(): Node[];
}
