/**
 * inotify(7) and statfs(2) numbers (the change feed). Same values on x86_64 and aarch64.
 *
 * @module
 */

// inotify_init1(2) flags (= O_NONBLOCK, O_CLOEXEC).
export const IN_NONBLOCK = 0o4000;
export const IN_CLOEXEC = 0o2000000;

// inotify event bits.
export const IN_MODIFY = 0x00000002;
export const IN_ATTRIB = 0x00000004;
export const IN_CLOSE_WRITE = 0x00000008;
export const IN_MOVED_FROM = 0x00000040;
export const IN_MOVED_TO = 0x00000080;
export const IN_CREATE = 0x00000100;
export const IN_DELETE = 0x00000200;
export const IN_DELETE_SELF = 0x00000400;
export const IN_MOVE_SELF = 0x00000800;
export const IN_UNMOUNT = 0x00002000;
export const IN_Q_OVERFLOW = 0x00004000;
export const IN_IGNORED = 0x00008000;
export const IN_ONLYDIR = 0x01000000;
export const IN_DONT_FOLLOW = 0x02000000;
export const IN_EXCL_UNLINK = 0x04000000;
export const IN_ISDIR = 0x40000000;

/** Bytes of struct inotify_event before its name: i32 wd | u32 mask | u32 cookie | u32 len. */
export const INOTIFY_EVENT_BYTES = 16;

/**
 * statfs(2) f_type of filesystems whose changes inotify does not (fully) report: kernel pseudo
 * filesystems (contents made up on read) and network or FUSE filesystems (changes made by
 * other machines or daemons send no events).
 */
export const UNWATCHABLE_FS_TYPES: ReadonlyMap<number, string> = new Map([
  [0x9fa0, "proc"],
  [0x62656572, "sysfs"],
  [0x27e0eb, "cgroup"],
  [0x63677270, "cgroup2"],
  [0x64626720, "debugfs"],
  [0x74726163, "tracefs"],
  [0x73636673, "securityfs"],
  [0xcafe4a11, "bpf"],
  [0x6e736673, "nsfs"],
  [0x1cd1, "devpts"],
  [0x65735546, "fuse"],
  [0x6969, "nfs"],
  [0xff534d42, "cifs"],
  [0xfe534d42, "smb2"],
  [0x01021997, "9p"],
]);
