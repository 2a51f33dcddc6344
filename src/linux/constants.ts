/**
 * Linux constants: the one place where the kernel's numbers are written down.
 *
 * Values are Linux's asm-generic ones, the same on x86_64 and aarch64 (the only architectures
 * dockerfuse runs on). The FUSE layer, the filesystem, the protocol and the satellite all import
 * them from here; nothing else defines an errno, file-type or open-flag number.
 *
 * @module
 */

/** Linux errno numbers by name. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  ENOTBLK: 15,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  EDOM: 33,
  ERANGE: 34,
  EDEADLK: 35,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENOMSG: 42,
  EIDRM: 43,
  ENOSTR: 60,
  ENODATA: 61,
  ETIME: 62,
  ENOSR: 63,
  ENOLINK: 67,
  EPROTO: 71,
  EBADMSG: 74,
  EOVERFLOW: 75,
  EBADFD: 77,
  EILSEQ: 84,
  EUSERS: 87,
  ENOTSOCK: 88,
  EMSGSIZE: 90,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  ENETDOWN: 100,
  ENETUNREACH: 101,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
  ESTALE: 116,
  EUCLEAN: 117,
  EREMOTEIO: 121,
  EDQUOT: 122,
  ENOMEDIUM: 123,
  EMEDIUMTYPE: 124,
  ECANCELED: 125,
  ENOKEY: 126,
  EKEYEXPIRED: 127,
  EKEYREVOKED: 128,
  EKEYREJECTED: 129,
  EOWNERDEAD: 130,
  ENOTRECOVERABLE: 131,
  ERFKILL: 132,
  EHWPOISON: 133,
} as const;

/** An errno name Linux defines (and the protocol carries). */
export type ErrnoName = keyof typeof ERRNO;

// File types and mode bits (stat.h).
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
export const S_ISVTX = 0o1000;
export const S_IXGRP = 0o010;
/** Permission bits plus set-user-ID, set-group-ID and sticky. */
export const MODE_PERM_MASK = 0o7777;

// Directory entry types (getdents64 d_type).
export const DT_UNKNOWN = 0;
export const DT_FIFO = 1;
export const DT_CHR = 2;
export const DT_DIR = 4;
export const DT_BLK = 6;
export const DT_REG = 8;
export const DT_LNK = 10;
export const DT_SOCK = 12;

/**
 * Byte offsets in a `struct linux_dirent64` (getdents64): `d_ino` u64, `d_off` u64, `d_reclen`
 * u16, `d_type` u8, then the NUL-terminated name, padded to `d_reclen`.
 */
export const DIRENT64 = { ino: 0, off: 8, reclen: 16, type: 18, name: 19 } as const;
/** The smallest valid `d_reclen`: the fixed part and a one-byte name with its NUL. */
export const DIRENT64_MIN_RECLEN = 20;

// open(2) flags, in x86_64's numbering (also the protocol's). aarch64 numbers O_DIRECTORY,
// O_NOFOLLOW, O_DIRECT and O_LARGEFILE differently (protocol/methods.ts translates).
export const O_ACCMODE = 0o3;
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DSYNC = 0o10000;
export const O_DIRECT = 0o40000;
export const O_LARGEFILE = 0o100000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_NOATIME = 0o1000000;
export const O_CLOEXEC = 0o2000000;
/** O_SYNC includes O_DSYNC. */
export const O_SYNC = 0o4010000;
export const O_PATH = 0o10000000;
export const O_TMPFILE = 0o20200000;
/** The open flags aarch64 numbers differently (asm-generic), by name. */
export const AARCH64_OPEN_FLAGS = {
  O_DIRECTORY: 0o40000,
  O_NOFOLLOW: 0o100000,
  O_DIRECT: 0o200000,
  O_LARGEFILE: 0o400000,
} as const;

// *at(2) flags.
export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_SYMLINK_FOLLOW = 0x400;
export const AT_NO_AUTOMOUNT = 0x800;
export const AT_EMPTY_PATH = 0x1000;

// openat2(2) resolve flags.
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;

// statx(2) masks.
export const STATX_BASIC_STATS = 0x7ff;
export const STATX_BTIME = 0x800;

// utimensat(2) special nsec values.
/** Set the time to now. */
export const UTIME_NOW = (1 << 30) - 1;
/** Leave the time unchanged. */
export const UTIME_OMIT = (1 << 30) - 2;

// renameat2(2) flags.
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

// setxattr(2) flags and limits.
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const XATTR_SIZE_MAX = 65536;
export const XATTR_LIST_MAX = 65536;

// lseek(2) whence.
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

// fallocate(2) modes.
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

// fcntl(2) commands.
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_SETPIPE_SZ = 1031;

/** posix_fadvise(2): the pages will be read soon (the kernel starts reading them now). */
export const POSIX_FADV_WILLNEED = 3;
/** getrlimit/setrlimit resource: open descriptors (7 on x86_64 and aarch64 alike). */
export const RLIMIT_NOFILE = 7;

/** eventfd(2) flags (the same on x86_64 and aarch64). */
export const EFD_CLOEXEC = 0o2000000;

/** poll(2) events. */
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;

// mount(2) and umount2(2) flags.
export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;

// Sockets (socketpair(2), SCM_RIGHTS fd passing).
export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
export const MSG_DONTWAIT = 0x40;

// Limits (limits.h).
export const NAME_MAX = 255;
export const PATH_MAX = 4096;

// io_uring(7): the few pieces the FUSE ring uses. Syscall numbers are the same on x86_64 and
// aarch64.
export const SYS_IO_URING_SETUP = 425;
export const SYS_IO_URING_ENTER = 426;
export const IORING_SETUP_CQSIZE = 1 << 3;
export const IORING_SETUP_SQE128 = 1 << 10;
export const IORING_FEAT_SINGLE_MMAP = 1 << 0;
export const IORING_ENTER_GETEVENTS = 1 << 0;
export const IORING_OP_READ = 22;
export const IORING_OP_URING_CMD = 46;
export const IORING_OFF_SQ_RING = 0;
export const IORING_OFF_CQ_RING = 0x8000000;
export const IORING_OFF_SQES = 0x10000000;
/** struct io_uring_params (120): 0 sq_entries | 4 cq_entries | 8 flags | 20 features | 40 sq_off | 80 cq_off */
export const IO_URING_PARAMS_SIZE = 120;
/**
 * Offsets in io_uring_params: sq_off (io_sqring_offsets: 0 head | 4 tail | 8 ring_mask |
 * 12 ring_entries | 16 flags | 20 dropped | 24 array) and cq_off (io_cqring_offsets: 0 head |
 * 4 tail | 8 ring_mask | 12 ring_entries | 16 overflow | 20 cqes).
 */
export const IoUringParams = {
  SQ_ENTRIES: 0,
  CQ_ENTRIES: 4,
  FLAGS: 8,
  FEATURES: 20,
  SQ_OFF: 40,
  CQ_OFF: 80,
} as const;
/** A 128-byte SQE (IORING_SETUP_SQE128): 0 u8 opcode | 1 u8 flags | 2 u16 ioprio | 4 s32 fd |
 * 8 u64 off (u32 cmd_op for URING_CMD) | 16 u64 addr | 24 u32 len | 28 u32 op flags |
 * 32 u64 user_data | 48 cmd[80]. A CQE (16): 0 u64 user_data | 8 s32 res | 12 u32 flags. */
export const SQE128_SIZE = 128;
export const SqeOffset = {
  OPCODE: 0,
  FD: 4,
  OFF: 8,
  ADDR: 16,
  LEN: 24,
  USER_DATA: 32,
  CMD: 48,
} as const;
export const CQE_SIZE = 16;
/** Offsets within io_uring_params.sq_off of the fields the ring uses. */
export const SqRingOffset = { TAIL: 4, RING_MASK: 8, ARRAY: 24 } as const;
/** Offsets within io_uring_params.cq_off of the fields the ring uses. */
export const CqRingOffset = { HEAD: 0, TAIL: 4, RING_MASK: 8, CQES: 20 } as const;
/** sched_setscheduler(2) policy: no wake-up preemption. */
export const SCHED_BATCH = 3;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_POPULATE = 0x8000;

/**
 * statfs(2) f_type of local filesystems: there a file's space is freed when its last reference
 * goes, and no other machine sees its name meanwhile (NFS, for one, renames a file unlinked
 * while open to `.nfsXXXX` instead).
 */
export const LOCAL_FS_TYPES: ReadonlySet<number> = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0xf2f52010, // f2fs
  0x01021994, // tmpfs
  0x794c7630, // overlayfs (its upper layer is a local filesystem)
]);

/**
 * statfs(2) f_type of filesystems whose files have no flush of their own (ext4, xfs, tmpfs), or
 * pass it to such a one (overlayfs: its upper layer's): there `close()` reports no error a write
 * did not report already, so a close-time flush has nothing to ask (NFS, CIFS, FUSE write back
 * at close and can fail there).
 */
export const QUIET_CLOSE_FS_TYPES: ReadonlySet<number> = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x01021994, // tmpfs
  0x794c7630, // overlayfs
]);
