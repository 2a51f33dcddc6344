// The POSIX behaviour table (posix_table.ts), run through real kernel mounts of the memory
// filesystem. Client operations run in python3 subprocesses (the test process serves the mount).

import { deepStrictEqual, ok } from "node:assert/strict";
import { py, requireFuse, withMount } from "./helpers.ts";
import { localContext, rootNode } from "./memfs.ts";
import { POSIX_TABLE } from "./posix_table.ts";

await requireFuse();

// The table runs three times: page cache in write-through mode, with the writeback cache, and
// served through io_uring rings (FUSE over io_uring; the mount switches fuse.enable_uring on).
const MODES: { mode: string; writebackCache: boolean; ioUring: boolean }[] = [
  { mode: "", writebackCache: false, ioUring: false },
  { mode: " [writeback]", writebackCache: true, ioUring: false },
  { mode: " [io_uring]", writebackCache: false, ioUring: true },
];
for (const { mode, writebackCache, ioUring } of MODES) {
  for (const { name, run, allowOther } of POSIX_TABLE) {
    Deno.test(
      `posix: ${name}${mode}`,
      () =>
        withMount(async ({ dir, session }) => {
          await run(dir);
          if (ioUring) {
            const served = session.ringRequests;
            ok(served !== undefined, "the mount serves /dev/fuse, not io_uring rings");
            ok(served > 0, "no request came through the rings");
          }
        }, { mount: { allowOther, writebackCache, ioUring } }),
    );
  }
}

Deno.test("posix: readdir of 10,000 entries with telldir/seekdir", () =>
  withMount(async ({ dir, fs }) => {
    // Populate directly (faster than 10,000 creates through the kernel), then list via the kernel.
    const ctx = localContext();
    const root = rootNode();
    const d = fs.mkdir(ctx, root, "big", 0o755);
    ok(!(d instanceof Error) && "attr" in d);
    const bigNode = { ...root, nodeId: 0n, ino: d.attr.ino };
    for (let i = 0; i < 10_000; i++) fs.mknod(ctx, bigNode, `file-${i}`, 0o100644, 0);
    const r = await py(
      `
names = os.listdir("big")
R["count"] = len(names)
R["unique"] = len(set(names))
R["has_last"] = "file-9999" in names
class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.argtypes = [ctypes.c_void_p]
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.telldir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
libc.closedir.argtypes = [ctypes.c_void_p]
d = libc.opendir(b"big")
for i in range(6000):
    libc.readdir(d)
pos = libc.telldir(d)
first = [libc.readdir(d).contents.d_name for _ in range(3)]
for i in range(2000):
    libc.readdir(d)
libc.seekdir(d, pos)
again = [libc.readdir(d).contents.d_name for _ in range(3)]
R["seek_same"] = first == again
n = 0
libc.seekdir(d, 0)
while libc.readdir(d):
    n += 1
R["total_with_dots"] = n
libc.closedir(d)
`,
      { cwd: dir },
    );
    deepStrictEqual(r, {
      count: 10_000,
      unique: 10_000,
      has_last: true,
      seek_same: true,
      total_with_dots: 10_002,
    });
  }));

/** `base` cut (whole code points) so that it and `suffix` take at most 255 bytes of UTF-8. */
function nameMax(suffix: string, base: string): string {
  const points = Array.from(base);
  const bytes = (s: string): number => new TextEncoder().encode(s).length;
  while (bytes(points.join("") + suffix) > 255) points.pop();
  return points.join("") + suffix;
}

Deno.test("posix: readdir shows UTF-8 and 255-byte names whole, wherever a reply buffer ends", () =>
  withMount(async ({ dir, fs }) => {
    const ctx = localContext();
    const root = rootNode();
    const d = fs.mkdir(ctx, root, "names", 0o755);
    ok(!(d instanceof Error) && "attr" in d);
    const node = { ...root, nodeId: 0n, ino: d.attr.ino };
    // Names of every UTF-8 width, up to NAME_MAX bytes, between ASCII ones of growing length so
    // that each kind lands at the end of some reply buffer (4 KiB READDIR, 32 KiB READDIRPLUS).
    const special = [
      "é",
      "日本語のファイル",
      "😀 emoji",
      "a".repeat(255),
      "é".repeat(127) + "a",
      "€".repeat(85),
      "😀".repeat(63) + "abc",
    ];
    const names: string[] = [];
    for (let i = 0; i < 600; i++) {
      names.push(`f${i}-${"x".repeat(i % 97)}`);
      if (i % 13 === 0) names.push(nameMax(`-${i}`, special[(i / 13) % special.length]));
    }
    names.push(...special);
    for (const name of names) fs.mknod(ctx, node, name, 0o100644, 0);
    const r = await py(
      `
R["plain"] = sorted(os.listdir("names"))
R["plus"] = sorted(e.name for e in os.scandir("names") if e.stat(follow_symlinks=False))
`,
      { cwd: dir },
    );
    const want = [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const sorted = (xs: unknown): string[] =>
      [...(xs as string[])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    deepStrictEqual(sorted(r.plain), want);
    deepStrictEqual(sorted(r.plus), want);
  }));
