// POSIX exactness through a mount of the glibc image, checked from inside the container too: a
// tree deeper than PATH_MAX worked on from a deep working directory, hard links, a directory
// renamed under an open file and cached names, and chmod & co. racing a file swapped for a
// symlink inside the container (the symlink's target never changes).

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { PATH_MAX } from "../../src/linux/mod.ts";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { py } from "../fuse/helpers.ts";
import { docker, type E2EMount, startMount } from "./harness.ts";

/** Containers are named after the checkout, so parallel checkouts can tell theirs apart. */
const CHECKOUT = new URL("../../", import.meta.url).pathname.replace(/\/+$/, "").split("/").pop();
let started = 0;

/** A named glibc container mounted with `args`; both go away whatever `fn` does. */
async function withGlibc(
  label: string,
  fn: (m: E2EMount) => Promise<void>,
  args: string[] = [],
  setup = "",
): Promise<void> {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const name = `dockerfuse-${CHECKOUT}-${label}-${Deno.pid}-${started++}`;
  const container = await startTestContainer(bed, "glibc", { name });
  try {
    if (setup) await docker(["exec", container, "sh", "-c", setup]);
    const m = await startMount("glibc", { container, args });
    try {
      await fn(m);
    } finally {
      await m.cleanup();
    }
  } finally {
    await removeTestContainer(bed, container);
  }
}

/** `sh -c script` inside the container; its stdout (throws on failure). */
async function inside(m: E2EMount, script: string): Promise<string> {
  return (await docker(["exec", m.container, "sh", "-c", script])).stdout;
}

Deno.test("e2e: a tree deeper than PATH_MAX is created, listed, stat'ed, renamed and removed from a deep cwd", async () => {
  await withGlibc("deep", async (m) => {
    // 40 levels of 200-byte names: about 8 KB below the mount's /tmp/deep.
    const r = await py(
      `
import shutil
names = ["%02d" % i + "d" * 198 for i in range(40)]
os.mkdir("deep")
os.chdir("deep")
for n in names:
    os.mkdir(n, 0o750)
    os.chdir(n)
write_file("f", b"at the bottom")
os.link("f", "g")
st = os.stat("f")
R["bottom"] = sorted(os.listdir("."))
R["f"] = [st.st_size, st.st_nlink, oct(os.stat(".").st_mode & 0o777)]
os.rename("g", "h")
R["renamed"] = sorted(os.listdir("."))
R["ino"] = st.st_ino
# ten levels up: the rest is a relative path of ten components from a cwd past PATH_MAX
for _ in range(10):
    os.chdir("..")
rel = "/".join(names[30:])
R["rel_same"] = os.stat(rel + "/f").st_ino == st.st_ino
R["rel_list"] = sorted(e.name for e in os.scandir(rel))
R["too_long_name"] = E(os.mkdir, "x" * 256)
# a directory deep inside is renamed: old names go, new names work at once
os.rename("/".join(names[30:36]), "/".join(names[30:35]) + "/moved")
moved = "/".join(names[30:35]) + "/moved/" + "/".join(names[36:])
R["old"] = E(os.stat, rel + "/f")
R["new"] = read_file(moved + "/f").decode()
os.mkdir(moved + "/new")
R["new_dir"] = sorted(os.listdir(moved))
`,
      { cwd: `${m.mountpoint}/tmp` },
    );
    deepStrictEqual(r.bottom, ["f", "g"]);
    deepStrictEqual(r.f, [13, 2, "0o750"]);
    deepStrictEqual(r.renamed, ["f", "h"]);
    equal(r.rel_same, true);
    deepStrictEqual(r.rel_list, ["f", "h"]);
    equal(r.too_long_name, "ENAMETOOLONG");
    equal(r.old, "ENOENT");
    equal(r.new, "at the bottom");
    deepStrictEqual(r.new_dir, ["f", "h", "new"]);
    // The container's own view: the same inode, at a path longer than PATH_MAX.
    const found = (await inside(m, "find /tmp/deep -name f -printf '%i %n %s\\n%p\\n'"))
      .split("\n");
    deepStrictEqual(found[0], `${r.ino} 2 13`);
    ok(found[1].length > PATH_MAX, `${found[1].length} bytes`);
    ok(found[1].includes("/moved/"), found[1].slice(-300));
    equal(Number(await inside(m, "find /tmp/deep -type d | wc -l")), 42);
    // Removed through the mount (fd-relative: each unlinkat names one entry).
    const gone = await py(
      `
import shutil
shutil.rmtree("deep")
R["gone"] = E(os.stat, "deep")
`,
      { cwd: `${m.mountpoint}/tmp` },
    );
    equal(gone.gone, "ENOENT");
    equal(
      await inside(m, "ls /tmp/deep 2>&1 || true"),
      "ls: cannot access '/tmp/deep': No such file or directory\n",
    );
  });
});

Deno.test("e2e: hard links share one inode; unlinking one keeps the other; rename onto itself is a no-op", async () => {
  await withGlibc("links", async (m) => {
    const r = await py(
      `
os.mkdir("links")
os.chdir("links")
os.mkdir("sub")
write_file("a", b"one")
os.link("a", "b")
os.link("a", "sub/c")
sa, sb, sc = os.stat("a"), os.stat("b"), os.stat("sub/c")
R["same"] = sa.st_ino == sb.st_ino == sc.st_ino
R["nlink"] = [sa.st_nlink, sb.st_nlink, sc.st_nlink]
with open("b", "r+b") as f:
    f.write(b"two")
R["through_a"] = read_file("a").decode()
os.unlink("a")
R["a"] = E(os.stat, "a")
R["after_unlink"] = [os.stat("b").st_nlink, os.stat("sub/c").st_nlink, read_file("b").decode()]
os.rename("b", "sub/c")
R["self_rename"] = [sorted(os.listdir(".")), sorted(os.listdir("sub")), os.stat("b").st_nlink]
os.rename("sub", "moved")
R["moved"] = [read_file("moved/c").decode(), os.stat("moved/c").st_ino == sb.st_ino, E(os.stat, "sub/c")]
os.unlink("b")
R["last"] = [os.stat("moved/c").st_nlink, read_file("moved/c").decode()]
R["ino"] = sb.st_ino
`,
      { cwd: `${m.mountpoint}/tmp` },
    );
    equal(r.same, true);
    deepStrictEqual(r.nlink, [3, 3, 3]);
    equal(r.through_a, "two");
    equal(r.a, "ENOENT");
    deepStrictEqual(r.after_unlink, [2, 2, "two"]);
    deepStrictEqual(r.self_rename, [["b", "sub"], ["c"], 2]);
    deepStrictEqual(r.moved, ["two", true, "ENOENT"]);
    deepStrictEqual(r.last, [1, "two"]);
    equal(
      await inside(m, "stat -c '%i %h' /tmp/links/moved/c; ls /tmp/links"),
      `${r.ino} 1\nmoved\n`,
    );
  });
});

Deno.test("e2e: a directory renamed under an open file and cached children: the fd follows, old names go, new names show", async () => {
  await withGlibc("rename", async (m) => {
    const r = await py(
      `
os.makedirs("r/d/sub")
os.chdir("r")
write_file("d/sub/f", b"0123456789")
write_file("d/g", b"g")
fd = os.open("d/sub/f", os.O_RDWR)
# the kernel and the client now know these names and attributes
R["before"] = [sorted(os.listdir("d")), sorted(os.listdir("d/sub")), os.stat("d/sub/f").st_size]
os.stat("d/g")
os.rename("d", "e")
os.pwrite(fd, b"AB", 2)
R["via_fd"] = os.pread(fd, 10, 0).decode()
R["old"] = [E(os.stat, "d"), E(os.stat, "d/sub/f"), E(os.stat, "d/g"), E(os.listdir, "d")]
R["new"] = [sorted(os.listdir("e")), sorted(os.listdir("e/sub")), read_file("e/sub/f").decode(), read_file("e/g").decode()]
os.makedirs("x")
os.rename("e", "x/e")
os.fchmod(fd, 0o600)
os.ftruncate(fd, 4)
os.pwrite(fd, b"Z", 3)
os.fsync(fd)
R["after_move"] = [os.fstat(fd).st_size, oct(os.stat("x/e/sub/f").st_mode & 0o777), read_file("x/e/sub/f").decode(), E(os.stat, "e")]
os.close(fd)
`,
      { cwd: `${m.mountpoint}/tmp` },
    );
    deepStrictEqual(r.before, [["g", "sub"], ["f"], 10]);
    equal(r.via_fd, "01AB456789");
    deepStrictEqual(r.old, ["ENOENT", "ENOENT", "ENOENT", "ENOENT"]);
    deepStrictEqual(r.new, [["g", "sub"], ["f"], "01AB456789", "g"]);
    deepStrictEqual(r.after_move, [4, "0o600", "01AZ", "ENOENT"]);
    equal(
      await inside(m, "stat -c '%a %s' /tmp/r/x/e/sub/f; cat /tmp/r/x/e/sub/f; echo; ls /tmp/r"),
      "600 4\n01AZ\nx\n",
    );
  });
});

Deno.test("e2e: chmod, chown, utimes and truncate racing a swap to a symlink never touch the symlink's target", async () => {
  // The secret lives outside the mounted /target; the symlink is absolute, so when the host
  // kernel follows it, it resolves on the host, where SECRET does not exist.
  const secret = `/dockerfuse-race-${crypto.randomUUID()}`;
  let exists = true;
  try {
    await Deno.lstat(secret);
  } catch {
    exists = false;
  }
  equal(exists, false, `${secret} exists on the host`);
  const setup = `mkdir -p /target ${secret} && printf secret > ${secret}/f && ` +
    `chmod 600 ${secret}/f && touch -d @1000000000 ${secret}/f`;
  await withGlibc(
    "race",
    async (m) => {
      const before = await inside(m, `stat -c '%a %u %g %s %Y' ${secret}/f`);
      equal(before, "600 0 0 6 1000000000\n");
      // Inside the container: /target/sw flips between a regular file and a symlink to the secret.
      await docker([
        "exec",
        "-d",
        m.container,
        "sh",
        "-c",
        `cd /target && while :; do echo in > f.tmp; mv -f f.tmp sw; ln -s ${secret}/f l.tmp; ` +
        "mv -Tf l.tmp sw; done",
      ]);
      const r = await py(
        `
seen = set()
while len(seen) < 2:
    try:
        seen.add("link" if stat.S_ISLNK(os.lstat("sw").st_mode) else "file")
    except OSError as x:
        # Losing the race (below: allowed outcomes) while waiting to see both kinds.
        if x.errno not in (errno.ENOENT, errno.ESTALE):
            raise
    time.sleep(0.01)
hits, outcomes, links = 0, {}, 0
ops = [
    lambda: os.chmod("sw", 0o777),
    lambda: os.chown("sw", 4242, 4242),
    lambda: os.utime("sw", (1, 1)),
    lambda: os.truncate("sw", 0),
    lambda: os.chown("sw", 4343, 4343, follow_symlinks=False),
    lambda: os.utime("sw", (2, 2), follow_symlinks=False),
]
for i in range(1500):
    for op in ops:
        try:
            op()
            hits += 1
        except OSError as x:
            name = errno.errorcode.get(x.errno, str(x.errno))
            outcomes[name] = outcomes.get(name, 0) + 1
    try:
        if stat.S_ISLNK(os.lstat("sw").st_mode):
            links += 1
    except OSError:
        pass
R["hits"], R["outcomes"], R["links"] = hits, outcomes, links
`,
        { cwd: m.mountpoint },
      );
      console.log(`race: ${r.hits} changes made, failures ${JSON.stringify(r.outcomes)}`);
      ok(r.hits > 0, "the regular file was never hit: the test did not race");
      ok(r.links > 0, "the symlink was never seen: the test did not race");
      // Losing the race is ENOENT (the host followed the symlink: no such path on the host) or
      // ESTALE (replaced again before the kernel's retry); never EIO (attributes of another file
      // type told for the kernel's inode) nor EINVAL (a regular file's readlink).
      const allowed = new Set(["ENOENT", "ESTALE", "ELOOP", "ENOTSUP", "EOPNOTSUPP"]);
      deepStrictEqual(Object.keys(r.outcomes).filter((e) => !allowed.has(e)), [], "failures");
      equal(await inside(m, `stat -c '%a %u %g %s %Y' ${secret}/f`), before);
      equal(await inside(m, `cat ${secret}/f`), "secret");
    },
    ["--path", "/target"],
    setup,
  );
});
