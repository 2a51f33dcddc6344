// The root satellite against a hostile container: a CREATE that meets an existing file opens it
// only with the caller's rights; no attribute change follows a symlink swapped in meanwhile;
// xattrs without /proc never resolve a joined path; a new inode the satellite cannot give to its
// owner is not left behind.

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { AT_FDCWD, O_CLOEXEC, O_PATH } from "../../src/linux/mod.ts";
import { OpenFlags, RpcClient, RpcFailure } from "../../src/protocol/mod.ts";
import { type EntryList, entryList } from "../../src/protocol/records.ts";
import { SatelliteFs } from "../../satellite/fs.ts";
import { cString, Libc } from "../../satellite/libc.ts";
import { errnoOf, startSatellite, valueOf } from "./harness.ts";

const NOBODY = { uid: 65534, gid: 65534 };
const SATELLITE = new URL("../../satellite/main.ts", import.meta.url).pathname;

/** SatelliteFs in this process (tests need root), on `root`. */
function inProcess(
  root: string,
  options: {
    procFd?: string;
    rootPath?: string;
    noFchmodat2?: boolean;
    noListxattrat?: boolean;
    whenIdle?: (fn: () => void) => void;
  } = {},
): { h: ReturnType<SatelliteFs["handlers"]>; close: () => void } {
  const libc = new Libc();
  const fd = libc.fn.openat(AT_FDCWD, cString(root)!, O_PATH | O_CLOEXEC, 0);
  ok(fd >= 0, `cannot open ${root}`);
  // rootPath is what an older SatelliteFs joined xattr paths to; now it must not matter
  const fsOptions = { rootPath: options.rootPath ?? root, ...options };
  const fs = new SatelliteFs(libc, fd, fsOptions);
  return {
    h: fs.handlers(),
    close: () => {
      fs.closeAll();
      libc.fn.close(fd);
    },
  };
}

function failed(value: unknown): string {
  ok(value instanceof RpcFailure, `expected a failure, got ${Deno.inspect(value)}`);
  return value.code;
}

Deno.test("create of an existing file opens it only with the caller's rights", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfsat-create-" });
  Deno.chmodSync(root, 0o755);
  const h = startSatellite(root);
  const c = h.client.call;
  try {
    await h.client.ready;
    // root's file, readable by nobody, writable only by root (and group root)
    for (const [name, mode] of [["secret", 0o600], ["groupw", 0o664]] as const) {
      Deno.writeTextFileSync(`${root}/${name}`, "keep me");
      Deno.chmodSync(`${root}/${name}`, mode);
      // the kernel's lookup said "no such file" just before: it sends CREATE, not OPEN
      const r = await c.create({
        path: name,
        flags: OpenFlags.O_RDWR | OpenFlags.O_TRUNC,
        mode: 0o666,
        owner: NOBODY,
      });
      strictEqual(errnoOf(r), "EACCES", name);
      strictEqual(Deno.readTextFileSync(`${root}/${name}`), "keep me", `${name} was truncated`);
    }
    // read-only open of a world-readable file is the caller's right
    Deno.chmodSync(`${root}/groupw`, 0o664);
    const ro = valueOf(
      await c.create({ path: "groupw", flags: 0, mode: 0o666, owner: NOBODY }),
    );
    strictEqual(ro.stat.uid, 0, "the existing file, not a new one");
    valueOf(await c.release({ handle: ro.handle }));
    // the caller's own file opens and truncates as asked
    Deno.writeTextFileSync(`${root}/mine`, "old");
    Deno.chownSync(`${root}/mine`, NOBODY.uid, NOBODY.gid);
    Deno.chmodSync(`${root}/mine`, 0o600);
    const mine = valueOf(
      await c.create({
        path: "mine",
        flags: OpenFlags.O_RDWR | OpenFlags.O_TRUNC,
        mode: 0o600,
        owner: NOBODY,
      }),
    );
    strictEqual(mine.stat.size, 0n);
    valueOf(await c.release({ handle: mine.handle }));
    // O_EXCL still says EEXIST, a new name is still created for its owner
    strictEqual(
      errnoOf(
        await c.create({
          path: "mine",
          flags: OpenFlags.O_RDWR | OpenFlags.O_EXCL,
          mode: 0o600,
          owner: NOBODY,
        }),
      ),
      "EEXIST",
    );
    const fresh = valueOf(
      await c.create({ path: "fresh", flags: OpenFlags.O_RDWR, mode: 0o640, owner: NOBODY }),
    );
    deepStrictEqual([fresh.stat.uid, fresh.stat.gid, fresh.stat.mode & 0o7777], [
      65534,
      65534,
      0o640,
    ]);
    valueOf(await c.release({ handle: fresh.handle }));
    // the satellite is root again afterwards
    const made = valueOf(await c.mkdir({ path: "after", mode: 0o700 })).stat;
    strictEqual(made.uid, 0);
    const again = valueOf(await c.create({ path: "secret", flags: OpenFlags.O_RDWR, mode: 0o600 }));
    valueOf(await c.release({ handle: again.handle }));
  } finally {
    await h.stop();
    await Deno.remove(root, { recursive: true });
  }
});

for (
  const [variant, options] of [
    ["fchmodat2", { procFd: "/proc/self/fd" }],
    ["O_PATH + /proc", { procFd: "/proc/self/fd", noFchmodat2: true }],
    ["no /proc", { procFd: undefined, noFchmodat2: true }],
  ] as const
) {
  Deno.test(`attribute changes never follow a symlink swapped in meanwhile (${variant})`, async () => {
    const base = await Deno.makeTempDir({ prefix: "dfsat-swap-" });
    const root = `${base}/root`;
    const target = `${base}/outside`;
    Deno.mkdirSync(root);
    Deno.writeTextFileSync(target, "outside the root");
    Deno.chmodSync(target, 0o600);
    const before = Deno.statSync(target);
    // A container process flips root/sw between a regular file and a symlink out of the root.
    const swapper = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const [root, target] = Deno.args.slice(-2);
       for (;;) {
         Deno.writeTextFileSync(root + "/f.tmp", "in");
         Deno.renameSync(root + "/f.tmp", root + "/sw");
         Deno.symlinkSync(target, root + "/l.tmp");
         Deno.renameSync(root + "/l.tmp", root + "/sw");
       }`,
        "--",
        root,
        target,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const { h, close } = inProcess(root, options);
    const changes: [string, () => unknown][] = [
      ["chmod", () => h.chmod({ path: "sw", mode: 0o777 })],
      ["setattr mode", () => h.setattr({ path: "sw", mode: 0o777 })],
      ["chown", () => h.chown({ path: "sw", uid: 4242, gid: 4242 })],
      ["utimens", () => h.utimens({ path: "sw", mtime: { sec: 1, nsec: 0 } })],
      ["truncate", () => h.truncate({ path: "sw", size: 0n })],
      [
        "setxattr",
        () => h.setxattr({ path: "sw", name: "user.pwned", value: new Uint8Array(1), flags: 0 }),
      ],
    ];
    let hits = 0;
    try {
      // the swapper is running once root/sw has been seen as both kinds
      const seen = new Set<string>();
      while (seen.size < 2) {
        try {
          seen.add(Deno.lstatSync(`${root}/sw`).isSymlink ? "link" : "file");
        } catch { /* not there yet, or between renames */ }
        await new Promise((r) => setTimeout(r, 1));
      }
      for (let round = 0; round < 4000; round++) {
        for (const [, change] of changes) {
          const r = change();
          if (!(r instanceof RpcFailure)) hits++;
        }
        if (round % 100 === 99) {
          const now = Deno.statSync(target);
          const xattr = new Deno.Command("getfattr", { args: ["-d", target] });
          const escaped = [
            now.mode !== before.mode ? `mode ${now.mode?.toString(8)}` : "",
            now.uid !== before.uid ? `uid ${now.uid}` : "",
            now.mtime?.getTime() !== before.mtime?.getTime() ? "mtime" : "",
            now.size !== before.size ? `size ${now.size}` : "",
            new TextDecoder().decode((await xattr.output()).stdout).includes("pwned")
              ? "xattr"
              : "",
          ].filter(Boolean);
          ok(escaped.length === 0, `round ${round}: changed outside the root: ${escaped}`);
        }
      }
      ok(hits > 0, "the regular file was never hit: the test did not race");
    } finally {
      swapper.kill("SIGKILL");
      await swapper.status;
      close();
      await Deno.remove(base, { recursive: true });
    }
  });
}

Deno.test("xattrs without /proc go through descriptors, never a path joined to the root", async () => {
  const base = await Deno.makeTempDir({ prefix: "dfsat-xattr-" });
  const root = `${base}/root`;
  const decoy = `${base}/decoy`;
  for (const dir of [root, decoy]) {
    Deno.mkdirSync(`${dir}/d`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/d/f`, dir);
  }
  Deno.symlinkSync(`${decoy}/d/f`, `${root}/d/link`);
  const set = (path: string, value: string) =>
    new Deno.Command("setfattr", { args: ["-n", "user.who", "-v", value, path] }).outputSync();
  set(`${root}/d/f`, "root");
  set(`${decoy}/d/f`, "decoy");
  set(`${root}/d`, "rootdir");
  // rootPath names another directory than the root descriptor: a joined path would show it
  const { h, close } = inProcess(root, { procFd: undefined, rootPath: decoy });
  const text = (v: unknown) => new TextDecoder().decode(v as Uint8Array);
  try {
    strictEqual(text(h.getxattr({ path: "d/f", name: "user.who" })), "root");
    strictEqual(text(h.getxattr({ path: "d", name: "user.who" })), "rootdir");
    deepStrictEqual(h.listxattr({ path: "d/f" }), ["user.who"]);
    strictEqual(
      h.setxattr({ path: "d/f", name: "user.new", value: new Uint8Array([7]), flags: 0 }),
      null,
    );
    strictEqual(h.removexattr({ path: "d/f", name: "user.who" }), null);
    deepStrictEqual(h.listxattr({ path: "d/f" }), ["user.new"]);
    // a final symlink is not followed (no user xattrs on symlinks)
    strictEqual(failed(h.getxattr({ path: "d/link", name: "user.who" })), "ENODATA");
    deepStrictEqual(h.listxattr({ path: "d/link" }), []);
    ok(["EPERM", "EOPNOTSUPP"].includes(
      failed(h.setxattr({ path: "d/link", name: "user.x", value: new Uint8Array(1), flags: 0 })),
    ));
    const decoyAttrs = new Deno.Command("getfattr", { args: ["-d", `${decoy}/d/f`] }).outputSync();
    strictEqual(new TextDecoder().decode(decoyAttrs.stdout).includes('user.who="decoy"'), true);
    ok(!new TextDecoder().decode(decoyAttrs.stdout).includes("user.new"));
  } finally {
    close();
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("listed entries say which have xattrs, through listxattrat, /proc or by name", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfsat-probe-" });
  const long = "x".repeat(255);
  const tagged: string[] = [];
  for (const dir of ["a", "b"]) {
    Deno.mkdirSync(`${root}/${dir}`);
    for (const name of ["plain", "tagged", long]) {
      Deno.writeTextFileSync(`${root}/${dir}/${name}`, name);
      if (name === "plain") continue;
      const set = new Deno.Command("setfattr", {
        args: ["-n", "user.k", "-v", "1", `${root}/${dir}/${name}`],
      }).outputSync();
      ok(set.success, new TextDecoder().decode(set.stderr));
      tagged.push(`${dir}/${name}`);
    }
  }
  try {
    const cwd = Deno.cwd();
    // Without listxattrat a listing probes each name from its directory, made the working one
    // for the listing (no /proc needed), then leaves the root's as the working directory.
    for (
      const options of [
        { procFd: "/proc/self/fd" },
        { procFd: "/proc/self/fd", noListxattrat: true },
        { noListxattrat: true },
      ]
    ) {
      const { h, close } = inProcess(root, options);
      try {
        const seen: string[] = [];
        const walked: string[] = [];
        const note = (dir: string, list: EntryList, into: string[]): void => {
          const entries = entryList(16).parse(list);
          ok(Array.isArray(entries), `${dir}: ${Deno.inspect(list)}`);
          for (const e of entries) {
            if (e.name === "." || e.name === "..") continue;
            strictEqual(typeof e.stat?.hasXattrs, "boolean", `${dir}/${e.name}: probed`);
            if (e.stat?.hasXattrs) into.push(`${dir}/${e.name as string}`);
          }
        };
        for (const dir of ["a", "b"]) {
          const opened = h.opendir({ path: dir, readAhead: 16 }) as { entries: EntryList };
          note(dir, opened.entries, seen);
        }
        Deno.chdir("/");
        const walk = h.walk({ paths: ["a", "b"], maxEntries: 100, maxBytes: 1 << 20 });
        ok(!(walk instanceof RpcFailure) && "dirs" in walk, Deno.inspect(walk));
        for (const dir of walk.dirs) note(dir.path as string, dir.entries, walked);
        const after = options.noListxattrat ? root : "/";
        strictEqual(Deno.cwd(), after, "the working directory after a walk");
        deepStrictEqual(seen.sort(), [...tagged].sort(), `readdir ${JSON.stringify(options)}`);
        deepStrictEqual(walked.sort(), [...tagged].sort(), `walk ${JSON.stringify(options)}`);
      } finally {
        Deno.chdir(cwd);
        close();
      }
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a new inode that cannot be given to its owner is removed and the call fails", async () => {
  // A root satellite in a user namespace mapping only uid 0, as under userns-remap engines:
  // chown to the caller's uid fails with EINVAL.
  const root = await Deno.makeTempDir({ prefix: "dfsat-userns-" });
  const child = new Deno.Command("unshare", {
    args: [
      "--user",
      "--map-root-user",
      Deno.execPath(),
      "run",
      "-A",
      "--no-lock",
      SATELLITE,
      "--root",
      root,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const client = new RpcClient(child.stdout, child.stdin);
  const c = client.call;
  try {
    const hello = await client.ready;
    strictEqual(hello.uid, 0);
    const owner = NOBODY;
    strictEqual(
      errnoOf(await c.create({ path: "f", flags: OpenFlags.O_RDWR, mode: 0o644, owner })),
      "EOVERFLOW",
    );
    strictEqual(errnoOf(await c.mkdir({ path: "d", mode: 0o755, owner })), "EOVERFLOW");
    strictEqual(errnoOf(await c.symlink({ path: "l", target: "x", owner })), "EOVERFLOW");
    strictEqual(
      errnoOf(await c.mknod({ path: "p", mode: 0o10644, rdevMajor: 0, rdevMinor: 0, owner })),
      "EOVERFLOW",
    );
    deepStrictEqual([...Deno.readDirSync(root)].map((e) => e.name), [], "nothing is left behind");
    // owners the namespace maps still work
    const mine = valueOf(
      await c.create({
        path: "f",
        flags: OpenFlags.O_RDWR,
        mode: 0o644,
        owner: { uid: 0, gid: 0 },
      }),
    );
    valueOf(await c.release({ handle: mine.handle }));
  } finally {
    await client.close();
    await child.status;
    await stderr;
    await Deno.remove(root, { recursive: true });
  }
});

/** This process's descriptors whose target ends with `suffix`. */
function descriptorsTo(suffix: string): string[] {
  return [...Deno.readDirSync("/proc/self/fd")].map((e) => e.name).filter((fd) => {
    try {
      return Deno.readLinkSync(`/proc/self/fd/${fd}`).endsWith(suffix);
    } catch {
      return false; // closed meanwhile (readDir's own descriptor)
    }
  });
}

Deno.test("unlink leaves a small file's last reference to the idle loop, errors intact", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfsat-unlink-" });
  const idle: (() => void)[] = [];
  const fs = inProcess(root, { whenIdle: (fn) => idle.push(fn) });
  try {
    await Deno.writeFile(`${root}/f`, new Uint8Array(64 * 1024));
    await Deno.writeFile(`${root}/g`, new Uint8Array(16));
    await Deno.writeFile(`${root}/big`, new Uint8Array(2 * 1024 * 1024));
    await Deno.writeFile(`${root}/linked`, new Uint8Array(16));
    await Deno.link(`${root}/linked`, `${root}/other`);
    await Deno.mkdir(`${root}/d`);
    ok(!(fs.h.unlink({ path: "big" }) instanceof RpcFailure));
    ok(!(fs.h.unlink({ path: "linked" }) instanceof RpcFailure));
    ok(!(fs.h.unlink({ path: "f" }) instanceof RpcFailure));
    ok(!(fs.h.unlink({ path: "g" }) instanceof RpcFailure));
    strictEqual(failed(fs.h.unlink({ path: "missing" })), "ENOENT");
    strictEqual(failed(fs.h.unlink({ path: "d" })), "EISDIR");
    deepStrictEqual(
      [...Deno.readDirSync(root)].map((e) => e.name).sort(),
      ["d", "other"],
      "the names are gone",
    );
    // Before the loop is idle: the small files are held, through one task; a file over 1 MiB,
    // one with another link and a failed unlink hold nothing.
    strictEqual(descriptorsTo(`${root}/f (deleted)`).length, 1);
    strictEqual(descriptorsTo(`${root}/g (deleted)`).length, 1);
    strictEqual(descriptorsTo(`${root}/big (deleted)`).length, 0, "over 1 MiB: freed at once");
    strictEqual(descriptorsTo(`${root}/linked`).length, 0, "another link: nothing to free");
    strictEqual(descriptorsTo(`${root}/d`).length, 0, "a failed unlink holds nothing");
    strictEqual(idle.length, 1);
    idle.shift()!();
    strictEqual(descriptorsTo(`${root}/f (deleted)`).length, 0);
    strictEqual(descriptorsTo(`${root}/g (deleted)`).length, 0);
  } finally {
    fs.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("unlink without an idle loop drops the reference at once", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfsat-unlink-" });
  const fs = inProcess(root);
  try {
    await Deno.writeFile(`${root}/f`, new Uint8Array(16));
    ok(!(fs.h.unlink({ path: "f" }) instanceof RpcFailure));
    strictEqual(descriptorsTo(`${root}/f (deleted)`).length, 0);
  } finally {
    fs.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the first I/O worker starts once the satellite is idle, before any read asks for it", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfs-prestart-" });
  const h = startSatellite(root);
  try {
    await h.client.ready;
    // Nothing is asked: the warm-up's listings run, then the worker starts on an idle turn.
    await new Promise((resolve) => setTimeout(resolve, 1500));
  } finally {
    await h.stop();
    await Deno.remove(root, { recursive: true });
  }
  const log = await h.stderr;
  ok(/I\/O worker 1 started ahead of the first job/.test(log), log);
  ok(h.calls.every((method) => method !== "read" && method !== "open"), h.calls.join(", "));
});
