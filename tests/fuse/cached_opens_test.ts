// Cached opens through a real kernel mount: opens the filesystem marked reusable are answered
// by the device's reader (the filesystem sees the first only), reads after the kernel dropped
// the pages still get the file's bytes (through a handle the session asks for then), and a
// change of the file ends the shortcut.

import { deepStrictEqual, ok } from "node:assert/strict";
import { py, requireFuse, withMount } from "./helpers.ts";
import { localContext, TrackedFs } from "./memfs.ts";

await requireFuse();

// The reader either polls the device for a while after answering (the default) or sleeps at
// once: both must serve the same.
for (const readerSpinMicros of [undefined, 0]) {
  const how = readerSpinMicros === 0 ? "a reader that sleeps at once" : "a polling reader";
  Deno.test(`cached opens (${how}): repeated opens and listings reach the filesystem once`, () =>
    repeatedOpens(readerSpinMicros));
}

async function repeatedOpens(readerSpinMicros: number | undefined): Promise<void> {
  const fs = new TrackedFs({ rootMode: 0o777, reuseOpens: 3600, attrTimeout: 3600 });
  await withMount(async ({ dir, session }) => {
    const p = JSON.stringify(dir);
    await py(`os.mkdir(${p} + "/d")
for i in range(20): write_file(${p} + "/d/f%d" % i, b"x%d" % i)`);
    const readAll = `R["data"] = [read_file(${p} + "/d/f%d" % i).decode() for i in range(20)]
R["names"] = sorted(os.listdir(${p} + "/d"))`;
    const want = Array.from({ length: 20 }, (_, i) => `x${i}`);
    const first = await py(readAll);
    deepStrictEqual(first.data, want);
    const [opens, opendirs] = [fs.openCalls, fs.opendirCalls];
    for (let round = 0; round < 3; round++) deepStrictEqual((await py(readAll)).data, want);
    deepStrictEqual([fs.openCalls, fs.opendirCalls], [opens, opendirs], "answered by the reader");

    // Pages dropped: the reads come to the session with the reader's handle numbers, and the
    // filesystem gives handles for them.
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "1");
    deepStrictEqual((await py(readAll)).data, want);
    ok(fs.cachedHandles >= 1, `handles asked: ${fs.cachedHandles}`);

    // Written through the mount: the write ends the mark; reads show the new bytes.
    await py(`write_file(${p} + "/d/f3", b"new")`);
    deepStrictEqual((await py(readAll)).data[3], "new");

    // Changed behind the kernel's back, then invalidated (as the change feed does): the next
    // open asks the filesystem again and shows the change.
    const node = fs.nodes.get("/d/f5")!;
    const ctx = localContext();
    const opened = fs.open(ctx, node, 1);
    ok("handle" in opened);
    const before = fs.openCalls;
    fs.write(ctx, node, opened.handle, 0, new TextEncoder().encode("yy"));
    await session.invalidateInode(node, 0, 0);
    deepStrictEqual((await py(readAll)).data[5], "yy");
    ok(fs.openCalls > before, "the open after the change reached the filesystem");
  }, { fs, mount: { attrTimeout: 3600, entryTimeout: 3600, readerSpinMicros } });
}

Deno.test("cached attrs: the stat after a read is answered by the reader", async () => {
  const fs = new TrackedFs({ rootMode: 0o777, stableAttrs: true, attrTimeout: 3600 });
  await withMount(async ({ dir, session }) => {
    const p = JSON.stringify(dir);
    await py(`write_file(${p} + "/f", b"0123456789")
os.stat(${p} + "/f")`); // the attributes after the write: asked once, then recorded
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "1");
    // A READ makes the kernel drop the file's atime: the fstat after it asks GETATTR.
    const calls = fs.getattrCalls;
    const r = await py(`fd = os.open(${p} + "/f", os.O_RDONLY)
R["data"] = os.read(fd, 100).decode()
R["size"] = os.fstat(fd).st_size
os.close(fd)
R["mode"] = os.stat(${p} + "/f").st_mode & 0o777`);
    deepStrictEqual(r, { data: "0123456789", size: 10, mode: 0o644 });
    deepStrictEqual(fs.getattrCalls, calls, "answered by the reader");

    // Changed through the mount: the kernel and the reader see the change.
    const after = await py(`os.chmod(${p} + "/f", 0o600)
R["mode"] = os.stat(${p} + "/f").st_mode & 0o777`);
    deepStrictEqual(after.mode, 0o600);

    // Changed behind the kernel's back, then invalidated: the next stat asks again.
    const node = fs.nodes.get("/f")!;
    const ctx = localContext();
    const opened = fs.open(ctx, node, 1);
    ok("handle" in opened);
    fs.write(ctx, node, opened.handle, 10, new TextEncoder().encode("abc"));
    await session.invalidateInode(node, -1);
    deepStrictEqual((await py(`R["size"] = os.stat(${p} + "/f").st_size`)).size, 13);
  }, { fs, mount: { attrTimeout: 3600, entryTimeout: 3600 } });
});

for (const dirChanged of [true, false]) {
  const how = dirChanged ? "answered with the change" : "asked of the filesystem";
  Deno.test(`cached attrs: a directory's attributes after a change of names are ${how}`, async () => {
    const fs = new TrackedFs({ rootMode: 0o777, stableAttrs: true, attrTimeout: 3600, dirChanged });
    await withMount(async ({ dir }) => {
      const p = JSON.stringify(dir);
      await py(`os.mkdir(${p} + "/d")
os.stat(${p} + "/d")`);
      const calls = fs.getattrCalls;
      // Each change, then a stat of the directory that must show it (mtime, and nlink for
      // subdirectories).
      const r = await py(`d = ${p} + "/d"
changes = [
    lambda: write_file(d + "/f", b"x"),
    lambda: os.close(os.open(d + "/g", os.O_CREAT | os.O_WRONLY, 0o644)),
    lambda: os.mkdir(d + "/sub"),
    lambda: os.symlink("f", d + "/l"),
    lambda: os.mknod(d + "/p", 0o10644),
    lambda: os.link(d + "/f", d + "/h"),
    lambda: os.unlink(d + "/f"),
    lambda: os.unlink(d + "/g"),
    lambda: os.rmdir(d + "/sub"),
]
R["newer"] = []
R["nlink"] = []
for change in changes:
    before = os.stat(d).st_mtime_ns
    change()
    st = os.stat(d)
    R["newer"].append(st.st_mtime_ns > before)
    R["nlink"].append(st.st_nlink)
R["mtime"] = str(os.stat(d).st_mtime_ns)`);
      const asked = fs.getattrCalls - calls;
      const mtime = fs.root.entries!.get("d")!.attr().mtime;
      deepStrictEqual(r.newer, Array(9).fill(true), "every stat shows its change");
      deepStrictEqual(r.nlink, [2, 2, 3, 3, 3, 3, 3, 3, 2]);
      deepStrictEqual(BigInt(r.mtime), BigInt(mtime.sec) * 1_000_000_000n + BigInt(mtime.nsec));
      // Without the attributes, the directory's GETATTR after each change reaches the filesystem.
      if (dirChanged) deepStrictEqual(asked, 0, "answered by the reader");
      else ok(asked >= 9, `asked ${asked} times`);
    }, { fs, mount: { attrTimeout: 3600, entryTimeout: 3600 } });
  });
}

Deno.test("cached attrs: a truncating open ends them (the kernel sends no SETATTR)", async () => {
  const fs = new TrackedFs({ rootMode: 0o777, stableAttrs: true, attrTimeout: 3600 });
  await withMount(async ({ dir }) => {
    const p = JSON.stringify(dir);
    const r = await py(`write_file(${p} + "/f", b"0123456789")
os.stat(${p} + "/f")
os.stat(${p} + "/f")
os.close(os.open(${p} + "/f", os.O_WRONLY | os.O_TRUNC))
R["size"] = os.stat(${p} + "/f").st_size
R["read"] = len(read_file(${p} + "/f"))`);
    deepStrictEqual(r, { size: 0, read: 0 });
  }, { fs, mount: { attrTimeout: 3600, entryTimeout: 3600 } });
});

Deno.test("cached opens through io_uring rings: files opened on two CPUs read their own bytes", async () => {
  // Each ring's thread answers the opens made on its CPU. Its handle numbers must differ from
  // every other ring's: the session keeps one handle per number once a read needs it.
  const fs = new TrackedFs({ rootMode: 0o777, reuseOpens: 3600, attrTimeout: 3600 });
  await withMount(async ({ dir, session }) => {
    const p = JSON.stringify(dir);
    const files = 16;
    await py(`for i in range(${files}): write_file(${p} + "/f%d" % i, b"bytes of f%d" % i)
for i in range(${files}): read_file(${p} + "/f%d" % i)`);
    const opens = fs.openCalls;
    const r = await py(`cpus = sorted(os.sched_getaffinity(0))[:2]
fds = []
for i in range(${files}):
    os.sched_setaffinity(0, {cpus[i % len(cpus)]})
    fds.append(os.open(${p} + "/f%d" % i, os.O_RDONLY))
R["cpus"] = len(cpus)
with open("/proc/sys/vm/drop_caches", "w") as f: f.write("1")
R["data"] = [os.pread(fd, 100, 0).decode() for fd in fds]
for fd in fds: os.close(fd)`);
    deepStrictEqual(
      r.data,
      Array.from({ length: files }, (_, i) => `bytes of f${i}`),
      `reads through ${r.cpus} CPUs' rings`,
    );
    deepStrictEqual(fs.openCalls, opens, "the opens were answered by the rings' threads");
    ok((session.ringRequests ?? 0) > 0, "no request came through the rings");
  }, { fs, mount: { attrTimeout: 3600, entryTimeout: 3600, ioUring: true } });
});
