// The POSIX behaviour table: each case runs against a fresh, empty directory of a mounted
// filesystem (its client side in python3 subprocesses). Registered against the memory filesystem
// by tests/fuse/posix_test.ts and against dockerfuse-mounted containers by tests/e2e.

import { deepStrictEqual } from "node:assert/strict";
import { py } from "./helpers.ts";

/** One row of the table. */
export interface PosixCase {
  readonly name: string;
  readonly run: (dir: string) => Promise<void>;
  /** The case acts as other users too: the mount needs allow_other. */
  readonly allowOther: boolean;
}

/** Every case, in order. */
export const POSIX_TABLE: PosixCase[] = [];

/**
 * Runs every case as a step of `t`, each in a fresh world-writable directory below `base` (made
 * here, mode 0777, inside the filesystem under test).
 */
export async function stepPosixTable(t: Deno.TestContext, base: string): Promise<void> {
  await Deno.mkdir(base);
  await Deno.chmod(base, 0o777);
  for (const [i, { name, run }] of POSIX_TABLE.entries()) {
    await t.step(name, async () => {
      const dir = `${base}/${i}`;
      await Deno.mkdir(dir);
      await Deno.chmod(dir, 0o777);
      await run(dir);
    });
  }
}

function posix(name: string, run: (dir: string) => Promise<void>, allowOther = false): void {
  POSIX_TABLE.push({ name, run, allowOther });
}

posix("create, write, read back, stat size", async (dir) => {
  const r = await py(
    `
write_file("f", b"hello world")
R["data"] = read_file("f").decode()
st = os.stat("f")
R["size"] = st.st_size
R["reg"] = stat.S_ISREG(st.st_mode)
R["perm"] = st.st_mode & 0o777
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { data: "hello world", size: 11, reg: true, perm: 0o644 });
});

posix("O_APPEND appends from two descriptors", async (dir) => {
  const r = await py(
    `
write_file("f", b"ab")
a = os.open("f", os.O_WRONLY | os.O_APPEND)
b = os.open("f", os.O_WRONLY | os.O_APPEND)
os.write(a, b"cd"); os.write(b, b"ef"); os.write(a, b"gh")
os.close(a); os.close(b)
R["data"] = read_file("f").decode()
`,
    { cwd: dir },
  );
  deepStrictEqual(r.data, "abcdefgh");
});

posix("O_EXCL on an existing file gives EEXIST", async (dir) => {
  const r = await py(
    `
write_file("f", b"x")
R["excl"] = E(os.open, "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
fd = os.open("g", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.close(fd)
R["g"] = oct(os.stat("g").st_mode & 0o777)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { excl: "EEXIST", g: "0o600" });
});

posix("O_TRUNC empties the file", async (dir) => {
  const r = await py(
    `
write_file("f", b"0123456789")
fd = os.open("f", os.O_RDWR | os.O_TRUNC)
R["size_open"] = os.fstat(fd).st_size
os.write(fd, b"ab")
os.close(fd)
R["data"] = read_file("f").decode()
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { size_open: 0, data: "ab" });
});

posix("truncate grows with zeros", async (dir) => {
  const r = await py(
    `
write_file("f", b"abc")
os.truncate("f", 10)
d = read_file("f")
R["size"] = os.stat("f").st_size
R["data"] = list(d)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { size: 10, data: [97, 98, 99, 0, 0, 0, 0, 0, 0, 0] });
});

posix("truncate shrinks and regrowing shows zeros, not old data", async (dir) => {
  const r = await py(
    `
write_file("f", b"abcdefgh")
os.truncate("f", 3)
R["short"] = read_file("f").decode()
os.truncate("f", 6)
R["regrown"] = list(read_file("f"))
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { short: "abc", regrown: [97, 98, 99, 0, 0, 0] });
});

posix("ftruncate on an open descriptor", async (dir) => {
  const r = await py(
    `
fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"x" * 100)
os.ftruncate(fd, 40)
R["fsize"] = os.fstat(fd).st_size
os.close(fd)
R["size"] = os.stat("f").st_size
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { fsize: 40, size: 40 });
});

posix("sparse file with data beyond 4 GiB", async (dir) => {
  const r = await py(
    `
off = 5 * 1024**3 + 123
fd = os.open("s", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"tail", off)
os.pwrite(fd, b"head", 0)
R["size"] = os.fstat(fd).st_size
R["tail"] = os.pread(fd, 4, off).decode()
R["head"] = os.pread(fd, 4, 0).decode()
R["hole"] = os.pread(fd, 8, 4 * 1024**3) == bytes(8)
R["blocks_small"] = os.fstat(fd).st_blocks * 512 < 64 * 1024**2
os.close(fd)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    size: 5 * 1024 ** 3 + 127,
    tail: "tail",
    head: "head",
    hole: true,
    blocks_small: true,
  });
});

posix("SEEK_DATA and SEEK_HOLE", async (dir) => {
  const r = await py(
    `
M = 1 << 20
fd = os.open("s", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"x", 8 * M)
os.fsync(fd)  # with the writeback cache, LSEEK only sees data written back
R["data"] = os.lseek(fd, 0, os.SEEK_DATA)
R["hole"] = os.lseek(fd, 0, os.SEEK_HOLE)
R["hole2"] = os.lseek(fd, 8 * M, os.SEEK_HOLE)
R["past"] = E(os.lseek, fd, 9 * M, os.SEEK_DATA)
os.close(fd)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { data: 8 * 2 ** 20, hole: 0, hole2: 8 * 2 ** 20 + 1, past: "ENXIO" });
});

posix("rename over an existing file replaces it", async (dir) => {
  const r = await py(
    `
write_file("a", b"A"); write_file("b", b"B")
ino = os.stat("a").st_ino
os.rename("a", "b")
R["a"] = os.path.exists("a")
R["b"] = read_file("b").decode()
R["same"] = os.stat("b").st_ino == ino
R["list"] = sorted(os.listdir("."))
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { a: false, b: "A", same: true, list: ["b"] });
});

posix("rename a directory over an empty one, not over a non-empty one", async (dir) => {
  const r = await py(
    `
os.mkdir("d1"); write_file("d1/f", b"1")
os.mkdir("d2")
os.mkdir("d3"); write_file("d3/g", b"3")
os.rename("d1", "d2")
R["moved"] = read_file("d2/f").decode()
R["nonempty"] = E(os.rename, "d2", "d3")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { moved: "1", nonempty: "ENOTEMPTY" });
});

posix("rename file over dir gives EISDIR, dir over file ENOTDIR", async (dir) => {
  const r = await py(
    `
write_file("f", b"x"); os.mkdir("d")
R["f_over_d"] = E(os.rename, "f", "d")
R["d_over_f"] = E(os.rename, "d", "f")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { f_over_d: "EISDIR", d_over_f: "ENOTDIR" });
});

posix("RENAME_NOREPLACE", async (dir) => {
  const r = await py(
    `
write_file("a", b"A"); write_file("b", b"B")
R["exists"] = rename2("a", "b", 1)
R["new"] = rename2("a", "c", 1)
R["c"] = read_file("c").decode()
R["b"] = read_file("b").decode()
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { exists: "EEXIST", new: 0, c: "A", b: "B" });
});

posix("RENAME_EXCHANGE swaps a file and a directory", async (dir) => {
  const r = await py(
    `
write_file("f", b"F"); os.mkdir("d"); write_file("d/inner", b"I")
R["missing"] = rename2("f", "nope", 2)
R["swap"] = rename2("f", "d", 2)
R["f_is_dir"] = os.path.isdir("f")
R["inner"] = read_file("f/inner").decode()
R["d"] = read_file("d").decode()
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { missing: "ENOENT", swap: 0, f_is_dir: true, inner: "I", d: "F" });
});

posix("renamed directory keeps serving its subtree", async (dir) => {
  const r = await py(
    `
os.makedirs("a/b/c"); write_file("a/b/c/f", b"deep")
os.rename("a", "z")
R["deep"] = read_file("z/b/c/f").decode()
os.rename("z/b", "b2")
R["moved"] = read_file("b2/c/f").decode()
R["into_self"] = E(os.rename, "b2", "b2/c/x")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { deep: "deep", moved: "deep", into_self: "EINVAL" });
});

posix("rmdir of a non-empty dir is ENOTEMPTY; wrong types are refused", async (dir) => {
  const r = await py(
    `
os.mkdir("d"); write_file("d/f", b"x"); write_file("g", b"x")
R["rmdir"] = E(os.rmdir, "d")
R["rmdir_file"] = E(os.rmdir, "g")
R["unlink_dir"] = E(os.unlink, "d")
os.unlink("d/f"); os.rmdir("d")
R["gone"] = os.path.exists("d")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    rmdir: "ENOTEMPTY",
    rmdir_file: "ENOTDIR",
    unlink_dir: "EISDIR",
    gone: false,
  });
});

posix("unlink an open file, then read and write it", async (dir) => {
  const r = await py(
    `
write_file("f", b"still here")
fd = os.open("f", os.O_RDWR)
os.unlink("f")
R["exists"] = os.path.exists("f")
R["read"] = os.pread(fd, 100, 0).decode()
os.pwrite(fd, b"!", 10)
R["read2"] = os.pread(fd, 100, 0).decode()
R["nlink"] = os.fstat(fd).st_nlink
os.close(fd)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { exists: false, read: "still here", read2: "still here!", nlink: 0 });
});

posix("symlink and readlink", async (dir) => {
  const r = await py(
    `
write_file("target", b"T")
os.symlink("target", "l")
os.symlink("/nowhere/at/all", "dangling")
R["readlink"] = os.readlink("l")
R["dangling"] = os.readlink("dangling")
R["through"] = read_file("l").decode()
R["islink"] = stat.S_ISLNK(os.lstat("l").st_mode)
R["lsize"] = os.lstat("l").st_size
R["follow_missing"] = E(os.stat, "dangling")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    readlink: "target",
    dangling: "/nowhere/at/all",
    through: "T",
    islink: true,
    lsize: 6,
    follow_missing: "ENOENT",
  });
});

posix("hard links share the inode and count nlink", async (dir) => {
  const r = await py(
    `
write_file("a", b"data")
os.link("a", "b")
os.mkdir("sub"); os.link("a", "sub/c")
R["nlink"] = os.stat("a").st_nlink
R["same"] = os.stat("a").st_ino == os.stat("b").st_ino == os.stat("sub/c").st_ino
with open("b", "ab") as f: f.write(b"+")
R["via_c"] = read_file("sub/c").decode()
os.unlink("a")
R["nlink_after"] = os.stat("b").st_nlink
R["b"] = read_file("b").decode()
R["dir_link"] = E(os.link, "sub", "sub2")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    nlink: 3,
    same: true,
    via_c: "data+",
    nlink_after: 2,
    b: "data+",
    dir_link: "EPERM",
  });
});

posix("directory nlink counts subdirectories", async (dir) => {
  const r = await py(
    `
os.mkdir("d")
R["empty"] = os.stat("d").st_nlink
os.mkdir("d/x"); os.mkdir("d/y"); write_file("d/f", b"")
R["two"] = os.stat("d").st_nlink
os.rmdir("d/x")
R["one"] = os.stat("d").st_nlink
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { empty: 2, two: 4, one: 3 });
});

posix("chmod changes permission bits and ctime", async (dir) => {
  const r = await py(
    `
write_file("f", b"")
c0 = os.stat("f").st_ctime_ns
time.sleep(0.01)
os.chmod("f", 0o4751)
st = os.stat("f")
R["mode"] = oct(st.st_mode & 0o7777)
R["ctime_moved"] = st.st_ctime_ns > c0
os.mkdir("d", 0o700)
os.chmod("d", 0o1777)
R["dmode"] = oct(os.stat("d").st_mode & 0o7777)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { mode: "0o4751", ctime_moved: true, dmode: "0o1777" });
});

posix("chown changes owner and group", async (dir) => {
  const r = await py(
    `
write_file("f", b"")
os.chown("f", 1234, 5678)
st = os.stat("f")
R["owner"] = [st.st_uid, st.st_gid]
os.chown("f", -1, 42)
st = os.stat("f")
R["group_only"] = [st.st_uid, st.st_gid]
os.symlink("f", "l")
os.lchown("l", 7, 8)
st = os.lstat("l")
R["link"] = [st.st_uid, st.st_gid]
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { owner: [1234, 5678], group_only: [1234, 42], link: [7, 8] });
});

posix("utimensat keeps nanoseconds", async (dir) => {
  const r = await py(
    `
write_file("f", b"")
os.utime("f", ns=(1_000_000_123_456_789, 1_234_567_890_987_654_321))
st = os.stat("f")
R["atime"] = str(st.st_atime_ns)
R["mtime"] = str(st.st_mtime_ns)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { atime: "1000000123456789", mtime: "1234567890987654321" });
});

posix("utimensat with UTIME_NOW sets the current time", async (dir) => {
  const r = await py(
    `
write_file("f", b"")
os.utime("f", ns=(0, 0))
before = time.time_ns()
os.utime("f")
st = os.stat("f")
R["recent"] = st.st_mtime_ns >= before - 2_000_000_000 and st.st_atime_ns >= before - 2_000_000_000
R["not_zero"] = st.st_mtime_ns != 0
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { recent: true, not_zero: true });
});

posix("write updates mtime; mtime has nanoseconds", async (dir) => {
  const r = await py(
    `
write_file("f", b"a")
m0 = os.stat("f").st_mtime_ns
time.sleep(0.01)
with open("f", "ab") as f: f.write(b"b")
m1 = os.stat("f").st_mtime_ns
R["later"] = m1 > m0
R["ns"] = any(x % 1000 != 0 for x in (m0, m1))
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { later: true, ns: true });
});

posix("statfs", async (dir) => {
  const r = await py(
    `
s = os.statvfs(".")
R["bsize"] = s.f_bsize
R["namemax"] = s.f_namemax
R["sane"] = s.f_blocks >= s.f_bfree >= s.f_bavail > 0 and s.f_files > 0
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { bsize: 4096, namemax: 255, sane: true });
});

posix("xattrs: set, get, list, remove, flags", async (dir) => {
  const r = await py(
    `
write_file("f", b"")
os.setxattr("f", "user.a", b"1")
os.setxattr("f", "user.b", b"\\x00binary\\xff")
R["a"] = os.getxattr("f", "user.a").decode()
R["b"] = list(os.getxattr("f", "user.b"))
R["list"] = sorted(os.listxattr("f"))
R["create_exists"] = E(os.setxattr, "f", "user.a", b"2", os.XATTR_CREATE)
R["replace_missing"] = E(os.setxattr, "f", "user.z", b"2", os.XATTR_REPLACE)
os.setxattr("f", "user.a", b"22", os.XATTR_REPLACE)
R["replaced"] = os.getxattr("f", "user.a").decode()
os.removexattr("f", "user.a")
R["missing"] = E(os.getxattr, "f", "user.a")
R["remove_missing"] = E(os.removexattr, "f", "user.a")
R["list2"] = os.listxattr("f")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    a: "1",
    b: [0, 98, 105, 110, 97, 114, 121, 255],
    list: ["user.a", "user.b"],
    create_exists: "EEXIST",
    replace_missing: "ENODATA",
    replaced: "22",
    missing: "ENODATA",
    remove_missing: "ENODATA",
    list2: ["user.b"],
  });
});

posix("xattr size probe and ERANGE", async (dir) => {
  const r = await py(
    `
write_file("f", b"")
os.setxattr("f", "user.long", b"0123456789")
g = libc.getxattr
g.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
g.restype = ctypes.c_ssize_t
R["probe"] = cerr(g(b"f", b"user.long", None, 0))
buf = ctypes.create_string_buffer(4)
R["small"] = cerr(g(b"f", b"user.long", buf, 4))
big = ctypes.create_string_buffer(64)
R["fits"] = cerr(g(b"f", b"user.long", big, 64))
l = libc.listxattr
l.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
l.restype = ctypes.c_ssize_t
R["list_probe"] = cerr(l(b"f", None, 0))
R["list_small"] = cerr(l(b"f", buf, 4))
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    probe: 10,
    small: "ERANGE",
    fits: 10,
    list_probe: 10,
    list_small: "ERANGE",
  });
});

posix("mkfifo and mknod", async (dir) => {
  const r = await py(
    `
os.mkfifo("p", 0o640)
st = os.stat("p")
R["fifo"] = stat.S_ISFIFO(st.st_mode)
R["perm"] = oct(st.st_mode & 0o777)
os.mknod("c", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
st = os.stat("c")
R["chr"] = stat.S_ISCHR(st.st_mode)
R["dev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
os.mknod("r", 0o600 | stat.S_IFREG)
R["reg"] = stat.S_ISREG(os.stat("r").st_mode)
`,
    { cwd: dir },
  );
  // The mount is nodev, so the device node exists but cannot be opened; its numbers show.
  deepStrictEqual(r, { fifo: true, perm: "0o640", chr: true, dev: [1, 3], reg: true });
});

posix("readdir lists ., .. and entries with types", async (dir) => {
  const r = await py(
    `
os.mkdir("d"); write_file("f", b""); os.symlink("f", "l")
R["list"] = sorted(os.listdir("."))
R["types"] = sorted([(e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in os.scandir(".")])
R["dots"] = sorted(n for n in os.popen("ls -a").read().split() if n.startswith("."))
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    list: ["d", "f", "l"],
    types: [["d", true, false], ["f", false, false], ["l", false, true]],
    dots: [".", ".."],
  });
});

posix("concurrent writers and readers from several processes", async (dir) => {
  const writers = [0, 1, 2, 3].map((i) =>
    py(
      `
import hashlib
data = bytes((i * 7 + ${i}) % 251 for i in range(3 * 1024 * 1024 + 17))
for k in range(3):
    write_file("w${i}", data)
fd = os.open("shared", os.O_WRONLY | os.O_CREAT, 0o644)
for k in range(64):
    os.pwrite(fd, bytes([${i} + 1]) * 4096, (k * 4 + ${i}) * 4096)
os.close(fd)
R["md5"] = hashlib.md5(data).hexdigest()
`,
      { cwd: dir },
    )
  );
  const written = await Promise.all(writers);
  const readers = [0, 1, 2, 3].map((i) =>
    py(
      `
import hashlib
R["md5"] = hashlib.md5(read_file("w${i}")).hexdigest()
d = read_file("shared")
R["shared_ok"] = len(d) == 256 * 4096 and all(d[b * 4096] == (b % 4) + 1 and d[b * 4096 + 4095] == (b % 4) + 1 for b in range(256))
`,
      { cwd: dir },
    )
  );
  const read = await Promise.all(readers);
  for (let i = 0; i < 4; i++) {
    deepStrictEqual(read[i].md5, written[i].md5, `file w${i}`);
    deepStrictEqual(read[i].shared_ok, true, `shared file seen by reader ${i}`);
  }
});

posix("concurrent appenders to one file lose nothing", async (dir) => {
  await Promise.all([0, 1, 2].map((i) =>
    py(
      `
fd = os.open("log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for k in range(200):
    os.write(fd, b"${i}" * 10 + b"\\n")
os.close(fd)
`,
      { cwd: dir },
    )
  ));
  const r = await py(
    `
lines = read_file("log").split(b"\\n")[:-1]
R["n"] = len(lines)
R["whole"] = all(len(l) == 10 and len(set(l)) == 1 for l in lines)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { n: 600, whole: true });
});

posix("fsync and fdatasync succeed", async (dir) => {
  const r = await py(
    `
fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"x")
R["fsync"] = E(os.fsync, fd)
R["fdatasync"] = E(os.fdatasync, fd)
os.close(fd)
dfd = os.open(".", os.O_RDONLY)
R["dirsync"] = E(os.fsync, dfd)
os.close(dfd)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { fsync: null, fdatasync: null, dirsync: null });
});

posix("pwrite/pread at scattered offsets and an 8 MiB checksum", async (dir) => {
  const r = await py(
    `
import hashlib, random
rnd = random.Random(7)
data = bytes(rnd.getrandbits(8) for _ in range(8 * 1024 * 1024))
write_file("big", data)
R["md5"] = hashlib.md5(read_file("big")).hexdigest() == hashlib.md5(data).hexdigest()
fd = os.open("big", os.O_RDWR)
ok = True
for k in range(50):
    off = rnd.randrange(0, 8 * 1024 * 1024 - 100)
    chunk = bytes(rnd.getrandbits(8) for _ in range(100))
    os.pwrite(fd, chunk, off)
    ok = ok and os.pread(fd, 100, off) == chunk
os.close(fd)
R["scattered"] = ok
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { md5: true, scattered: true });
});

posix("mkdir errors: EEXIST and missing parent", async (dir) => {
  const r = await py(
    `
os.mkdir("d")
R["exists"] = E(os.mkdir, "d")
R["no_parent"] = E(os.mkdir, "x/y")
R["file_parent"] = (write_file("f", b""), E(os.mkdir, "f/y"))[1]
R["lookup_missing"] = E(os.stat, "nothing")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, {
    exists: "EEXIST",
    no_parent: "ENOENT",
    file_parent: "ENOTDIR",
    lookup_missing: "ENOENT",
  });
});

posix("default_permissions: other users are checked by the kernel", async (dir) => {
  await py(
    `
write_file("private", b"secret", 0o600)
write_file("public", b"open", 0o644)
os.mkdir("locked", 0o700)
`,
    { cwd: dir },
  );
  const r = await py(
    `
R["read_private"] = E(read_file, "private")
R["read_public"] = read_file("public").decode()
R["write_public"] = E(os.open, "public", os.O_WRONLY)
R["enter_locked"] = E(os.listdir, "locked")
R["chmod_other"] = E(os.chmod, "public", 0o777)
`,
    { cwd: dir, user: "nobody" },
  );
  deepStrictEqual(r, {
    read_private: "EACCES",
    read_public: "open",
    write_public: "EACCES",
    enter_locked: "EACCES",
    chmod_other: "EPERM",
  });
}, true);

posix("new files belong to the caller; setgid directories pass their group", async (dir) => {
  await py(`os.mkdir("sg", 0o777); os.chown("sg", 0, 4321); os.chmod("sg", 0o2777)`, { cwd: dir });
  const r = await py(
    `
write_file("mine", b"")
st = os.stat("mine")
R["mine"] = [st.st_uid, st.st_gid]
write_file("sg/f", b"")
os.mkdir("sg/sub")
R["sg_file_gid"] = os.stat("sg/f").st_gid
R["sg_sub"] = [os.stat("sg/sub").st_gid, bool(os.stat("sg/sub").st_mode & 0o2000)]
`,
    { cwd: dir, user: "nobody" },
  );
  deepStrictEqual(r, { mine: [65534, 65534], sg_file_gid: 4321, sg_sub: [4321, true] });
}, true);

posix("sticky directory: only owners delete", async (dir) => {
  await py(`os.mkdir("tmp", 0o777); os.chmod("tmp", 0o1777); write_file("tmp/roots", b"")`, {
    cwd: dir,
  });
  const r = await py(
    `
R["delete_other"] = E(os.unlink, "tmp/roots")
write_file("tmp/own", b"")
R["delete_own"] = E(os.unlink, "tmp/own")
`,
    { cwd: dir, user: "nobody" },
  );
  deepStrictEqual(r, { delete_other: "EPERM", delete_own: null });
}, true);

posix("copy_file_range", async (dir) => {
  const r = await py(
    `
write_file("src", b"0123456789" * 1000)
a = os.open("src", os.O_RDONLY)
b = os.open("dst", os.O_WRONLY | os.O_CREAT, 0o644)
n = os.copy_file_range(a, b, 5000, 100, 10)
os.close(a); os.close(b)
d = read_file("dst")
R["n"] = n
R["prefix_zero"] = d[:10] == bytes(10)
R["copied"] = d[10:20].decode()
R["size"] = len(d)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { n: 5000, prefix_zero: true, copied: "0123456789", size: 5010 });
});

posix("fallocate extends; punch hole zeroes keeping size", async (dir) => {
  const r = await py(
    `
fd = os.open("f", os.O_RDWR | os.O_CREAT, 0o644)
os.posix_fallocate(fd, 0, 100000)
R["size"] = os.fstat(fd).st_size
os.pwrite(fd, b"x" * 1000, 0)
fa = libc.fallocate
fa.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
R["punch"] = cerr(fa(fd, 3, 100, 200))
d = os.pread(fd, 1000, 0)
R["zeroed"] = d[100:300] == bytes(200) and d[99:100] == b"x" and d[300:301] == b"x"
R["size2"] = os.fstat(fd).st_size
os.close(fd)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { size: 100000, punch: 0, zeroed: true, size2: 100000 });
});

posix("UTF-8 names round-trip", async (dir) => {
  const r = await py(
    `
names = ["caf\\u00e9", "\\u65e5\\u672c\\u8a9e", "emoji-\\U0001f600", "sp ace", "new\\nline"]
for n in names:
    write_file(n, n.encode())
R["all"] = sorted(os.listdir(".")) == sorted(names)
R["content"] = all(read_file(n).decode() == n for n in names)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { all: true, content: true });
});

posix("255-byte names work, 256 give ENAMETOOLONG", async (dir) => {
  const r = await py(
    `
ok = "n" * 255
write_file(ok, b"x")
R["ok"] = os.path.exists(ok)
R["long"] = E(os.open, "n" * 256, os.O_WRONLY | os.O_CREAT, 0o644)
R["long_stat"] = E(os.stat, "m" * 300)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { ok: true, long: "ENAMETOOLONG", long_stat: "ENAMETOOLONG" });
});

posix("names that are not UTF-8 are refused with EILSEQ", async (dir) => {
  const r = await py(
    `
R["create"] = E(os.open, b"bad\\xff\\xfe", os.O_WRONLY | os.O_CREAT, 0o644)
R["mkdir"] = E(os.mkdir, b"bad\\xc3")
R["list"] = os.listdir(".")
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { create: "EILSEQ", mkdir: "EILSEQ", list: [] });
});

posix("ls -l sees attributes delivered by READDIRPLUS", async (dir) => {
  const r = await py(
    `
for i in range(50):
    write_file("f%02d" % i, b"x" * i, 0o640)
out = os.popen("ls -ln --time-style=+%s").read().splitlines()[1:]
R["n"] = len(out)
R["modes"] = sorted(set(l.split()[0] for l in out))
R["sizes_ok"] = all(int(l.split()[4]) == int(l.split()[-1][1:]) for l in out)
`,
    { cwd: dir },
  );
  deepStrictEqual(r, { n: 50, modes: ["-rw-r-----"], sizes_ok: true });
});
