// Mount lifecycle through real kernel mounts: mountpoint checks, unmount with open files,
// unmount from outside, stale mounts and their recovery, non-root mounts via fusermount3,
// INTERRUPT and ENOSYS defaults.

import { S_IFDIR, S_IFREG } from "../../src/linux/mod.ts";
import {
  EINTR,
  ENOENT,
  type Entry,
  type FileSystem,
  inspectMountpoint,
  mount,
  prepareMount,
  recoverStaleMount,
  unmount,
} from "../../src/fuse/mod.ts";
import { deepStrictEqual, ok } from "node:assert/strict";
import { LineReader, py, requireFuse, withMount } from "./helpers.ts";
import { localContext, MemFs, TrackedFs } from "./memfs.ts";

await requireFuse();

const DENO = Deno.execPath();
const SERVE = new URL("./serve_memfs.ts", import.meta.url).pathname;

async function expectError(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (error) {
    const m = (error as Error).message;
    ok(pattern.test(m), `error '${m}' should match ${pattern}`);
    return;
  }
  throw new Error(`expected an error matching ${pattern}`);
}

Deno.test("mount: refuses a missing, non-directory or non-empty mountpoint", async () => {
  const base = await Deno.makeTempDir({ prefix: "dfh-fuse-" });
  try {
    const fs = new MemFs();
    await expectError(mount(fs, `${base}/missing`), /^Cannot mount '.*missing': no such directory/);
    await Deno.writeTextFile(`${base}/file`, "x");
    await expectError(mount(fs, `${base}/file`), /not a directory/);
    await Deno.mkdir(`${base}/full`);
    await Deno.writeTextFile(`${base}/full/x`, "x");
    deepStrictEqual(await inspectMountpoint(`${base}/full`), "non-empty");
    await expectError(mount(fs, `${base}/full`), /not empty/);
    await expectError(mount(fs, base, { fsName: "a,allow_other" }), /fsName may only contain/);
    // Asked explicitly, a non-empty directory is accepted (and hidden while mounted).
    const s = await mount(fs, `${base}/full`, { allowNonEmpty: true });
    deepStrictEqual(await inspectMountpoint(`${base}/full`), "mounted");
    await expectError(mount(fs, `${base}/full`, { allowNonEmpty: true }), /already mounted/);
    const r = await py(`R["list"] = os.listdir(${JSON.stringify(`${base}/full`)})`);
    deepStrictEqual(r.list, []);
    await s.unmount();
    deepStrictEqual(await inspectMountpoint(`${base}/full`), "non-empty");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("mount: a prepared mount checks its mountpoint again, mounts once, cancels", async () => {
  const base = await Deno.makeTempDir({ prefix: "dfh-fuse-" });
  try {
    await expectError(prepareMount(`${base}/missing`), /^Cannot mount '[^']*\/missing': no such/);
    await Deno.mkdir(`${base}/a`);
    await Deno.mkdir(`${base}/b`);
    const fs = new MemFs();
    // Prepared, then something else mounted there meanwhile: refused at mount, nothing stacked.
    const first = await prepareMount(`${base}/a`);
    const other = await mount(fs, `${base}/a`);
    await expectError(first.mount(fs), /^Cannot mount '[^']*\/a': something is already mounted/);
    await other.unmount();
    deepStrictEqual(await inspectMountpoint(`${base}/a`), "empty");
    // A prepared mount serves like mount()'s, and only once.
    const prepared = await prepareMount(`${base}/b`);
    const s = await prepared.mount(fs);
    await Deno.writeTextFile(`${base}/b/f`, "hello");
    deepStrictEqual(await Deno.readTextFile(`${base}/b/f`), "hello");
    await expectError(prepared.mount(fs), /already mounted once/);
    await s.unmount();
    // Cancelled, its reader thread ends: a process that prepared and cancelled exits by itself
    // (a reader left running keeps it alive).
    const mod = new URL("../../src/fuse/mod.ts", import.meta.url).href;
    const script = `const { prepareMount } = await import(${JSON.stringify(mod)});\n` +
      `const p = await prepareMount(${JSON.stringify(`${base}/b`)});\n` +
      `p.cancel(); p.cancel(); console.log("cancelled");`;
    const child = new Deno.Command(DENO, { args: ["eval", script], stdout: "piped" }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const out = await child.output();
    clearTimeout(timer);
    deepStrictEqual([out.code, new TextDecoder().decode(out.stdout).trim()], [0, "cancelled"]);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("mount: lazy unmount while a file is open keeps it readable until closed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfh-fuse-" });
  const session = await mount(new MemFs({ rootMode: 0o777 }), dir);
  try {
    await py(`write_file(${JSON.stringify(`${dir}/f`)}, b"kept")`);
    const child = new Deno.Command("/usr/bin/python3", {
      args: [
        "-c",
        `import os, sys
fd = os.open(${JSON.stringify(`${dir}/f`)}, os.O_RDONLY)
print("opened", flush=True)
sys.stdin.readline()
print(os.pread(fd, 100, 0).decode(), flush=True)
os.close(fd)`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const reader = new LineReader(child.stdout);
    deepStrictEqual(await reader.next(), "opened");
    await unmount(dir, { lazy: true });
    deepStrictEqual(await inspectMountpoint(dir), "empty", "detached from the tree");
    let closed = false;
    session.closed.then(() => closed = true);
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("go\n"));
    await w.close();
    deepStrictEqual(await reader.next(), "kept");
    deepStrictEqual((await child.status).code, 0);
    await session.closed;
    ok(closed, "the session ends once the last file is closed");
  } finally {
    await session.unmount().catch(() => {});
    await Deno.remove(dir);
  }
});

Deno.test("mount: an unmount from outside ends the session (ENODEV)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfh-fuse-" });
  let destroyed = false;
  const fs = new MemFs();
  const session = await mount(
    Object.assign(fs, { destroy: () => void (destroyed = true) }),
    dir,
  );
  const out = await new Deno.Command("umount", { args: [dir] }).output();
  ok(out.success, "umount(8) works");
  await session.closed;
  ok(destroyed, "destroy() called");
  await Deno.remove(dir);
});

Deno.test("mount: a stale mount is detected and recovered", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfh-fuse-" });
  try {
    const child = new Deno.Command(DENO, {
      args: ["run", "-A", SERVE, dir],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = new LineReader(child.stdout);
    deepStrictEqual(await reader.next(), "ready");
    child.kill("SIGKILL");
    await child.status;
    reader.release();
    deepStrictEqual(await inspectMountpoint(dir), "stale");
    await expectError(mount(new MemFs(), dir), /stale FUSE mount/);
    deepStrictEqual(await recoverStaleMount(dir), true);
    deepStrictEqual(await inspectMountpoint(dir), "empty");
    deepStrictEqual(await recoverStaleMount(dir), false);
  } finally {
    await unmount(dir, { lazy: true }).catch(() => {});
    await Deno.remove(dir);
  }
});

Deno.test("mount: non-root user mounts through fusermount3", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfh-fuse-" });
  const denoDir = await Deno.makeTempDir({ prefix: "dfh-denodir-" });
  await Deno.chown(dir, 65534, 65534);
  await Deno.chown(denoDir, 65534, 65534);
  try {
    const out = await new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        DENO,
        "run",
        "-A",
        "--no-lock",
        SERVE,
        dir,
        "--run",
        `cd ${dir} && echo hi > f && cat f && mkdir d && ls && stat -c '%u %g %a' f && id -u`,
      ],
      env: { HOME: denoDir, DENO_DIR: denoDir, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    ok(out.success, `child failed: ${stderr}`);
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    deepStrictEqual(lines[0], "ready");
    const r = JSON.parse(lines[1]);
    deepStrictEqual(r.code, 0, r.stderr);
    deepStrictEqual(r.stdout, "hi\nd\nf\n65534 65534 644\n65534\n");
    ok(
      r.mounts.some((l: string) => l.includes("fuse") && l.includes("user_id=65534")),
      "a user mount",
    );
    deepStrictEqual(await inspectMountpoint(dir), "empty", "unmounted afterwards");
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.remove(denoDir, { recursive: true });
  }
});

/** A tiny filesystem: one file whose reads wait until interrupted; nothing else implemented. */
function slowFs(seen: { aborted: boolean }): FileSystem<number> {
  const t = { sec: 1_700_000_000, nsec: 0 };
  const attr = (ino: bigint, mode: number) => ({
    ino,
    mode,
    nlink: 1,
    uid: 0,
    gid: 0,
    rdev: 0,
    size: 100,
    blocks: 0,
    atime: t,
    mtime: t,
    ctime: t,
  });
  return {
    lookup: (_c, _p, name): Entry | typeof ENOENT =>
      name === "slow" ? { attr: attr(2n, S_IFREG | 0o644) } : ENOENT,
    getattr: (_c, node) => ({
      attr: node.nodeId === 1n ? attr(1n, S_IFDIR | 0o755) : attr(2n, S_IFREG | 0o644),
    }),
    open: () => ({ handle: 1, directIo: true }),
    read: (ctx) =>
      new Promise((resolve) => {
        ctx.signal.addEventListener("abort", () => {
          seen.aborted = true;
          resolve(EINTR);
        });
      }),
  };
}

Deno.test("mount: a signal to a blocked reader INTERRUPTs the request", async () => {
  const seen = { aborted: false };
  await withMount(async ({ dir }) => {
    const r = await py(`
class Alarm(Exception): pass
def on_alarm(*a): raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
fd = os.open(${JSON.stringify(`${dir}/slow`)}, os.O_RDONLY)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    os.read(fd, 10)
    R["result"] = "read returned"
except Alarm:
    R["result"] = "interrupted"
os.close(fd)
`);
    deepStrictEqual(r.result, "interrupted");
  }, { fs: slowFs(seen) as unknown as MemFs });
  ok(seen.aborted, "the handler's AbortSignal fired");
});

Deno.test("mount: operations a filesystem does not implement answer ENOSYS", async () => {
  await withMount(async ({ dir }) => {
    const r = await py(`
p = ${JSON.stringify(dir)}
R["mkdir"] = E(os.mkdir, p + "/d")
R["symlink"] = E(os.symlink, "x", p + "/l")
R["setxattr"] = E(os.setxattr, p + "/slow", "user.a", b"1")
R["stat"] = os.stat(p + "/slow").st_size
R["statfs_namemax"] = os.statvfs(p).f_namemax
`);
    deepStrictEqual(r, {
      mkdir: "ENOSYS",
      symlink: "ENOSYS",
      setxattr: "ENOTSUP", // the kernel answers ENOSYS from setxattr with EOPNOTSUPP (= ENOTSUP)
      stat: 100,
      statfs_namemax: 255,
    });
  }, { fs: slowFs({ aborted: false }) as unknown as MemFs });
});

Deno.test("mount: invalidateInode and invalidateEntry drop kernel caches", async () => {
  const fs = new TrackedFs({ rootMode: 0o777, attrTimeout: 3600, entryTimeout: 3600 });
  await withMount(async ({ dir, session }) => {
    const p = JSON.stringify(dir);
    const r1 = await py(`write_file(${p} + "/f", b"abc"); R["size"] = os.stat(${p} + "/f").st_size
R["missing"] = E(os.stat, ${p} + "/later")`);
    deepStrictEqual(r1, { size: 3, missing: "ENOENT" });
    const node = fs.nodes.get("/f")!;
    const root = fs.nodes.get("/")!;
    // Change the file behind the kernel's back: the cached size stays until invalidated.
    const ctx = localContext();
    const opened = fs.open(ctx, node, 1);
    ok("handle" in opened);
    fs.write(ctx, node, opened.handle, 3, new TextEncoder().encode("defg"));
    fs.create(ctx, root, "later", 0o100644, 1);
    deepStrictEqual((await py(`R["size"] = os.stat(${p} + "/f").st_size`)).size, 3);
    deepStrictEqual(await session.invalidateInode(node, -1), true);
    deepStrictEqual(await session.invalidateEntry(root, "later"), true);
    const r2 = await py(`R["size"] = os.stat(${p} + "/f").st_size
R["later"] = os.path.exists(${p} + "/later")`);
    deepStrictEqual(r2, { size: 7, later: true });
  }, { fs, mount: { negativeTimeout: 3600, attrTimeout: 3600, entryTimeout: 3600 } });
});

Deno.test("mount: abort() ends a session whose files are still open", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfh-fuse-" });
  const session = await mount(new MemFs({ rootMode: 0o777 }), dir);
  const child = new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      `import os, sys
fd = os.open(${JSON.stringify(`${dir}/f`)}, os.O_RDWR | os.O_CREAT, 0o644)
print("opened", flush=True)
sys.stdin.readline()
try:
    os.pwrite(fd, b"x", 0)
    print("wrote", flush=True)
except OSError as e:
    print(e.errno, flush=True)`,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = new LineReader(child.stdout);
  deepStrictEqual(await reader.next(), "opened");
  // abort() works whether fusectl is mounted or not (.ci/run runs this group in both states).
  deepStrictEqual(await session.abort(), true);
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("go\n"));
  await w.close();
  deepStrictEqual(await reader.next(), "107", "ENOTCONN after abort");
  await child.status;
  deepStrictEqual(await inspectMountpoint(dir), "empty");
  await Deno.remove(dir);
});

Deno.test("mount: writeback cache mode keeps file contents right", async () => {
  await withMount(async ({ dir }) => {
    const r = await py(`
p = ${JSON.stringify(dir)} + "/f"
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"hello ")
os.pwrite(fd, b"X", 2)
os.close(fd)
a = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(a, b"world")
os.close(a)
os.truncate(p, 9)
R["data"] = read_file(p).decode()
R["size"] = os.stat(p).st_size
`);
    deepStrictEqual(r, { data: "heXlo wor", size: 9 });
  }, { mount: { writebackCache: true } });
});

Deno.test("mount: the read-ahead window is raised for root (4096 KiB by default, or as asked)", async () => {
  const window = async (dir: string): Promise<string> => {
    const dev = (await Deno.stat(dir)).dev;
    const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    return (await Deno.readTextFile(`/sys/class/bdi/0:${minor}/read_ahead_kb`)).trim();
  };
  await withMount(async (m) => deepStrictEqual(await window(m.dir), "4096"));
  await withMount(async (m) => deepStrictEqual(await window(m.dir), "1024"), {
    mount: { readAheadKb: 1024 },
  });
  await withMount(async (m) => deepStrictEqual(await window(m.dir), "128"), {
    mount: { readAheadKb: 0 },
  });
});
