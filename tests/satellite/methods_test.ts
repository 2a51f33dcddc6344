// Every method of the protocol against a real satellite (deno run from source) over pipes,
// serving a temporary directory on tmpfs (/dev/shm: sparse files up to 2^63-1, user xattrs).

import { S_IFCHR, S_IFLNK, S_IFMT } from "../../src/linux/mod.ts";
import { deepStrictEqual, equal, ok } from "node:assert/strict";
import {
  OpenFlags,
  PROTOCOL_VERSION,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  SEEK_DATA,
  SEEK_HOLE,
  UTIME_NOW,
  UTIME_OMIT,
} from "../../src/protocol/mod.ts";
import { errnoOf, startSatellite, valueOf } from "./harness.ts";

const enc = new TextEncoder();

Deno.test("satellite serves every method over pipes", async (t) => {
  const root = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dfsat-" });
  const h = startSatellite(root);
  const c = h.client.call;
  try {
    await t.step("handshake", async () => {
      const hello = await h.client.ready;
      equal(hello.protocol, PROTOCOL_VERSION);
      equal(hello.buildId, "dev");
      equal(hello.uid, 0);
      equal(hello.root, root);
      equal(hello.arch, Deno.build.arch);
    });

    await t.step("create, write, read, lstat with ns times", async () => {
      const r = valueOf(
        await c.create({
          path: "f.txt",
          flags: OpenFlags.O_RDWR,
          mode: 0o640,
          owner: { uid: 1234, gid: 4321 },
        }),
      );
      equal(r.stat.mode, 0o100640);
      equal(r.stat.uid, 1234);
      equal(r.stat.gid, 4321);
      equal(r.quietClose, true, "tmpfs: a close reports nothing a write did not");
      equal(
        valueOf(await c.write({ handle: r.handle, offset: 0n, data: enc.encode("hello world") })),
        11,
      );
      const data = valueOf(await c.read({ handle: r.handle, offset: 6n, size: 100 }));
      equal(new TextDecoder().decode(data), "world");
      deepStrictEqual(
        valueOf(await c.read({ handle: r.handle, offset: 100n, size: 10 })).length,
        0,
      );
      valueOf(await c.release({ handle: r.handle }));
      const st = valueOf(await c.lstat({ path: "f.txt" }));
      const host = Deno.lstatSync(`${root}/f.txt`);
      equal(st.size, 11n);
      equal(Number(st.ino), host.ino);
      equal(st.nlink, 1);
      equal(st.mtimeSec, Math.floor(host.mtime!.getTime() / 1000));
      ok(st.mtimeNsec >= 0 && st.mtimeNsec < 1e9);
      equal(st.blocks > 0n, true);
      equal(errnoOf(await c.release({ handle: r.handle })), "EBADF");
    });

    await t.step("create: O_EXCL gives EEXIST, without it opens the existing file", async () => {
      equal(
        errnoOf(
          await c.create({
            path: "f.txt",
            flags: OpenFlags.O_RDWR | OpenFlags.O_EXCL,
            mode: 0o600,
          }),
        ),
        "EEXIST",
      );
      const r = valueOf(await c.create({ path: "f.txt", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      equal(r.stat.size, 11n);
      equal(r.stat.uid, 1234); // not re-chowned
      valueOf(await c.release({ handle: r.handle }));
    });

    await t.step(
      "open: a writable handle on tmpfs has a quiet close, a read-only one is not asked",
      async () => {
        for (
          const [flags, quiet] of [[OpenFlags.O_WRONLY, true], [OpenFlags.O_RDWR, true], [
            0,
            undefined,
          ]] as const
        ) {
          const r = valueOf(await c.open({ path: "f.txt", flags }));
          equal(r.quietClose, quiet, `flags ${flags}`);
          valueOf(await c.release({ handle: r.handle }));
          // A reopen after a reconnect asks for the file's attributes too: both come.
          const again = valueOf(await c.open({ path: "f.txt", flags, stat: true }));
          equal(again.quietClose, quiet, `flags ${flags}, stat`);
          equal(again.stat?.size, 11n, `flags ${flags}, stat`);
          valueOf(await c.release({ handle: again.handle }));
          // With a read ahead too (what a read-only open asks): quietClose still comes.
          const ahead = valueOf(await c.open({ path: "f.txt", flags, readAhead: 4096 }));
          equal(ahead.quietClose, quiet, `flags ${flags}, readAhead`);
          valueOf(await c.release({ handle: ahead.handle }));
        }
      },
    );

    await t.step("open: errors", async () => {
      equal(errnoOf(await c.open({ path: "missing", flags: 0 })), "ENOENT");
      equal(errnoOf(await c.open({ path: "f.txt/x", flags: 0 })), "ENOTDIR");
      equal(errnoOf(await c.open({ path: "", flags: OpenFlags.O_WRONLY })), "EISDIR");
    });

    await t.step("offsets beyond 2^53 (sparse file); fstat after unlink", async () => {
      const r = valueOf(await c.create({ path: "sparse", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      const far = (1n << 60n) + 12345n;
      equal(valueOf(await c.write({ handle: r.handle, offset: far, data: enc.encode("far") })), 3);
      equal(valueOf(await c.lstat({ path: "sparse" })).size, far + 3n);
      equal(
        new TextDecoder().decode(valueOf(await c.read({ handle: r.handle, offset: far, size: 3 }))),
        "far",
      );
      equal(
        valueOf(await c.lseek({ handle: r.handle, offset: 0n, whence: SEEK_DATA })) > (1n << 59n),
        true,
      );
      equal(valueOf(await c.lseek({ handle: r.handle, offset: 0n, whence: SEEK_HOLE })), 0n);
      equal(errnoOf(await c.read({ handle: r.handle, offset: 1n << 63n, size: 1 })), "EINVAL");
      valueOf(await c.ftruncate({ handle: r.handle, size: 5n }));
      equal(valueOf(await c.lstat({ path: "sparse" })).size, 5n);
      valueOf(await c.unlink({ path: "sparse" }));
      const unlinked = valueOf(await c.fstat({ handle: r.handle }));
      equal(unlinked.size, 5n);
      equal(unlinked.nlink, 0);
      valueOf(await c.release({ handle: r.handle }));
      equal(errnoOf(await c.fstat({ handle: r.handle })), "EBADF");
    });

    await t.step("1 MiB read and write round trip", async () => {
      const r = valueOf(await c.create({ path: "big", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      const data = new Uint8Array(1 << 20);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      equal(valueOf(await c.write({ handle: r.handle, offset: 4096n, data })), data.length);
      const back = valueOf(await c.read({ handle: r.handle, offset: 4096n, size: 1 << 20 }));
      deepStrictEqual(back, data);
      equal(errnoOf(await c.read({ handle: r.handle, offset: 0n, size: (1 << 20) + 1 })), "EINVAL");
      valueOf(await c.fsync({ handle: r.handle, datasync: false }));
      valueOf(await c.fsync({ handle: r.handle, datasync: true }));
      // The flush answers the file's attributes after the writes.
      equal(valueOf(await c.flush({ handle: r.handle }))?.size, 4096n + BigInt(data.length));
      valueOf(await c.release({ handle: r.handle }));
    });

    await t.step("fallocate, punch hole, SEEK_DATA/SEEK_HOLE", async () => {
      const r = valueOf(await c.create({ path: "alloc", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      valueOf(await c.fallocate({ handle: r.handle, mode: 0, offset: 0n, length: 1n << 20n }));
      equal(valueOf(await c.lstat({ path: "alloc" })).size, 1n << 20n);
      valueOf(await c.write({ handle: r.handle, offset: 0n, data: new Uint8Array(8192).fill(1) }));
      // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
      valueOf(await c.fallocate({ handle: r.handle, mode: 3, offset: 0n, length: 4096n }));
      equal(valueOf(await c.lseek({ handle: r.handle, offset: 0n, whence: SEEK_DATA })), 4096n);
      equal(
        errnoOf(await c.lseek({ handle: r.handle, offset: 2n << 20n, whence: SEEK_DATA })),
        "ENXIO",
      );
      valueOf(await c.release({ handle: r.handle }));
    });

    await t.step("copyFileRange", async () => {
      const a = valueOf(await c.open({ path: "f.txt", flags: 0 }));
      const b = valueOf(await c.create({ path: "copy", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      const n = valueOf(
        await c.copyFileRange({
          handleIn: a.handle,
          offsetIn: 6n,
          handleOut: b.handle,
          offsetOut: 2n,
          length: 5n,
          flags: 0,
        }),
      );
      equal(n, 5n);
      deepStrictEqual(
        Deno.readFileSync(`${root}/copy`),
        new Uint8Array([0, 0, ...enc.encode("world")]),
      );
      valueOf(await c.release({ handle: a.handle }));
      valueOf(await c.release({ handle: b.handle }));
    });

    await t.step("mkdir, readdir in batches with plus, rmdir", async () => {
      const nlink = Deno.statSync(root).nlink!;
      const made = valueOf(
        await c.mkdir({ path: "d", mode: 0o2750, owner: { uid: 7, gid: 8 } }),
      );
      const st = made.stat;
      equal(st.mode, 0o40750); // like mkdir(2): set-gid comes from the parent, not from mode
      equal(st.uid, 7);
      // The parent's attributes after the change come with it: one more link (the child's "..").
      equal(made.dir?.nlink, nlink + 1);
      for (let i = 0; i < 300; i++) Deno.writeFileSync(`${root}/d/n${i}`, new Uint8Array(i));
      Deno.symlinkSync("n1", `${root}/d/link`);
      const dir = valueOf(await c.opendir({ path: "d" }));
      const names = new Map<string, bigint | undefined>();
      let offset = 0n;
      let batches = 0;
      for (;;) {
        const r = valueOf(
          await c.readdir({ handle: dir.handle, offset, plus: true, maxEntries: 50 }),
        );
        batches++;
        for (const e of r.entries) {
          names.set(String(e.name), e.stat?.size);
          if (e.name === "link") equal(e.stat!.mode & S_IFMT, S_IFLNK);
          if (e.name === "n5") equal(e.type, 8);
          offset = e.offset;
        }
        if (r.eof) break;
      }
      equal(names.size, 303);
      equal(names.get("n299"), 299n);
      equal(names.get("."), undefined);
      ok(batches >= 7);
      // restart from an earlier cookie (rewinddir) and without plus
      const again = valueOf(await c.readdir({ handle: dir.handle, offset: 0n, plus: false }));
      equal(again.entries.length, 256);
      equal(again.entries[0].stat, undefined);
      // a cookie from the middle resumes right after that entry, also on another handle
      const cookie = again.entries[99].offset;
      const other = valueOf(await c.opendir({ path: "d" }));
      const resumed = valueOf(
        await c.readdir({ handle: other.handle, offset: cookie, plus: false, maxEntries: 5 }),
      );
      deepStrictEqual(
        resumed.entries.map((e) => e.name),
        again.entries.slice(100, 105).map((e) => e.name),
      );
      valueOf(await c.release({ handle: other.handle }));
      valueOf(await c.release({ handle: dir.handle }));
      equal(errnoOf(await c.rmdir({ path: "d" })), "ENOTEMPTY");
      equal(errnoOf(await c.readdir({ handle: dir.handle, offset: 0n, plus: false })), "EBADF");
      equal(errnoOf(await c.opendir({ path: "f.txt" })), "ENOTDIR");
      equal(errnoOf(await c.mkdir({ path: "d", mode: 0o700 })), "EEXIST");
      valueOf(await c.mkdir({ path: "empty", mode: 0o700 }));
      valueOf(await c.rmdir({ path: "empty" }));
      equal(errnoOf(await c.rmdir({ path: "empty" })), "ENOENT");
    });

    await t.step("names that are not UTF-8 travel as bytes", async () => {
      const raw = new Uint8Array([0x62, 0xff, 0xfe, 0x2e, 0x74]); // "b\xff\xfe.t"
      const st = valueOf(await c.mknod({ path: raw, mode: 0o100600, rdevMajor: 0, rdevMinor: 0 }))
        .stat;
      equal(st.mode, 0o100600);
      const dir = valueOf(await c.opendir({ path: "" }));
      const r = valueOf(
        await c.readdir({ handle: dir.handle, offset: 0n, plus: false, maxEntries: 4096 }),
      );
      const found = r.entries.find((e) => e.name instanceof Uint8Array);
      deepStrictEqual(found?.name, raw);
      valueOf(await c.release({ handle: dir.handle }));
      valueOf(await c.unlink({ path: raw }));
    });

    await t.step("unlink, rename, NOREPLACE, EXCHANGE", async () => {
      Deno.writeTextFileSync(`${root}/r1`, "one");
      Deno.writeTextFileSync(`${root}/r2`, "two");
      equal(errnoOf(await c.rename({ from: "r1", to: "r2", flags: RENAME_NOREPLACE })), "EEXIST");
      valueOf(await c.rename({ from: "r1", to: "r2", flags: RENAME_EXCHANGE }));
      equal(Deno.readTextFileSync(`${root}/r1`), "two");
      const moved = valueOf(await c.rename({ from: "r1", to: "d/moved", flags: 0 }));
      equal(Deno.readTextFileSync(`${root}/d/moved`), "two");
      // Both directories' attributes after the change come with it.
      deepStrictEqual(
        [moved.fromDir?.ino, moved.toDir?.ino],
        [BigInt(Deno.statSync(root).ino!), BigInt(Deno.statSync(`${root}/d`).ino!)],
      );
      equal(errnoOf(await c.rename({ from: "r1", to: "x", flags: 0 })), "ENOENT");
      valueOf(await c.unlink({ path: "d/moved" }));
      equal(errnoOf(await c.unlink({ path: "d/moved" })), "ENOENT");
      equal(errnoOf(await c.unlink({ path: "d" })), "EISDIR");
    });

    await t.step("link, symlink, readlink", async () => {
      const linked = valueOf(await c.link({ from: "f.txt", to: "hard" }));
      const st = linked.stat;
      equal(st.nlink, 2);
      equal(linked.dir?.ino, BigInt(Deno.statSync(root).ino!)); // the directory of `to`
      equal(errnoOf(await c.link({ from: "f.txt", to: "hard" })), "EEXIST");
      const sl = valueOf(
        await c.symlink({ path: "sym", target: "../outside", owner: { uid: 5, gid: 6 } }),
      ).stat;
      equal(sl.mode & S_IFMT, S_IFLNK);
      equal(sl.uid, 5);
      equal(valueOf(await c.readlink({ path: "sym" })), "../outside");
      equal(errnoOf(await c.readlink({ path: "f.txt" })), "EINVAL");
      const rawTarget = new Uint8Array([0x61, 0x80]);
      valueOf(await c.symlink({ path: "sym2", target: rawTarget }));
      deepStrictEqual(valueOf(await c.readlink({ path: "sym2" })), rawTarget);
    });

    await t.step(
      "chmod, chown, utimens, truncate, setattr without following symlinks",
      async () => {
        valueOf(await c.chmod({ path: "f.txt", mode: 0o4755 }));
        equal(valueOf(await c.lstat({ path: "f.txt" })).mode, 0o104755);
        equal(errnoOf(await c.chmod({ path: "sym", mode: 0o777 })), "EOPNOTSUPP");
        valueOf(await c.chown({ path: "sym", uid: 11 }));
        const sl = valueOf(await c.lstat({ path: "sym" }));
        equal(sl.uid, 11);
        equal(sl.gid, 6);
        valueOf(
          await c.utimens({
            path: "f.txt",
            atime: { sec: 1000, nsec: 123456789 },
            mtime: { sec: -5, nsec: 1 },
          }),
        );
        let st = valueOf(await c.lstat({ path: "f.txt" }));
        deepStrictEqual([st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec], [
          1000,
          123456789,
          -5,
          1,
        ]);
        valueOf(
          await c.utimens({
            path: "f.txt",
            atime: { sec: 0, nsec: UTIME_OMIT },
            mtime: { sec: 0, nsec: UTIME_NOW },
          }),
        );
        st = valueOf(await c.lstat({ path: "f.txt" }));
        equal(st.atimeSec, 1000);
        ok(st.mtimeSec > 1_600_000_000);
        valueOf(await c.utimens({ path: "sym", mtime: { sec: 42, nsec: 0 } }));
        equal(valueOf(await c.lstat({ path: "sym" })).mtimeSec, 42);
        equal(Deno.statSync(`${root}/f.txt`).mtime!.getTime() > 42000, true);
        valueOf(await c.truncate({ path: "f.txt", size: 3n }));
        equal(valueOf(await c.lstat({ path: "f.txt" })).size, 3n);
        equal(errnoOf(await c.truncate({ path: "sym", size: 0n })), "ELOOP");
        const after = valueOf(
          await c.setattr({
            path: "f.txt",
            mode: 0o600,
            uid: 99,
            gid: 98,
            size: 1n,
            mtime: { sec: 77, nsec: 5 },
          }),
        );
        deepStrictEqual(
          [after.mode, after.uid, after.gid, after.size, after.mtimeSec, after.mtimeNsec],
          [0o100600, 99, 98, 1n, 77, 5],
        );
        equal(errnoOf(await c.setattr({ path: "nope", mode: 0o600 })), "ENOENT");
        // truncate through an open handle, even after the mode forbids writing
        const w = valueOf(await c.open({ path: "f.txt", flags: OpenFlags.O_RDWR }));
        valueOf(await c.chmod({ path: "f.txt", mode: 0o400 }));
        equal(valueOf(await c.setattr({ path: "f.txt", handle: w.handle, size: 9n })).size, 9n);
        valueOf(await c.release({ handle: w.handle }));
      },
    );

    await t.step("mknod fifo and char device", async () => {
      const fifo = valueOf(
        await c.mknod({ path: "fifo", mode: 0o10644, rdevMajor: 0, rdevMinor: 0 }),
      ).stat;
      equal(fifo.mode, 0o10644);
      const dev = valueOf(
        await c.mknod({ path: "null", mode: 0o20666, rdevMajor: 1, rdevMinor: 3 }),
      ).stat;
      deepStrictEqual([dev.mode & S_IFMT, dev.rdevMajor, dev.rdevMinor], [S_IFCHR, 1, 3]);
      const big = valueOf(
        await c.mknod({ path: "bigdev", mode: 0o60600, rdevMajor: 259, rdevMinor: 70000 }),
      ).stat;
      deepStrictEqual([big.rdevMajor, big.rdevMinor], [259, 70000]);
    });

    await t.step("statfs", async () => {
      const s = valueOf(await c.statfs({ path: "" }));
      ok(s.bsize > 0 && s.blocks > 0n && s.namemax === 255);
      equal(errnoOf(await c.statfs({ path: "missing" })), "ENOENT");
    });

    await t.step("xattrs", async () => {
      valueOf(
        await c.setxattr({ path: "f.txt", name: "user.k", value: enc.encode("v1"), flags: 0 }),
      );
      deepStrictEqual(
        valueOf(await c.getxattr({ path: "f.txt", name: "user.k" })),
        enc.encode("v1"),
      );
      equal(
        errnoOf(
          await c.setxattr({ path: "f.txt", name: "user.k", value: enc.encode("x"), flags: 1 }),
        ),
        "EEXIST",
      );
      valueOf(
        await c.setxattr({ path: "f.txt", name: "user.empty", value: new Uint8Array(0), flags: 0 }),
      );
      deepStrictEqual(valueOf(await c.getxattr({ path: "f.txt", name: "user.empty" })).length, 0);
      const names = valueOf(await c.listxattr({ path: "f.txt" }));
      ok(names.includes("user.k") && names.includes("user.empty"));
      valueOf(await c.removexattr({ path: "f.txt", name: "user.k" }));
      equal(errnoOf(await c.getxattr({ path: "f.txt", name: "user.k" })), "ENODATA");
      equal(errnoOf(await c.getxattr({ path: "missing", name: "user.k" })), "ENOENT");
      valueOf(await c.setxattr({ path: "", name: "user.root", value: enc.encode("r"), flags: 0 }));
      deepStrictEqual(valueOf(await c.getxattr({ path: "", name: "user.root" })), enc.encode("r"));
    });

    await t.step(
      "readFiles: whole small regular files of a directory, in order, within budgets",
      async () => {
        await Deno.mkdir(`${root}/rf`);
        await Deno.writeTextFile(`${root}/rf/a`, "alpha");
        await Deno.writeTextFile(`${root}/rf/empty`, "");
        await Deno.writeTextFile(`${root}/rf/big`, "x".repeat(5000));
        await Deno.writeTextFile(`${root}/rf/b`, "beta");
        await Deno.writeTextFile(`${root}/rf/c`, "gamma");
        await Deno.mkdir(`${root}/rf/sub`);
        await Deno.symlink("a", `${root}/rf/link`);
        const names = ["a", "empty", "big", "missing", "sub", "link", "../a", "b", "c"];
        const files = valueOf(
          await c.readFiles({ dir: "rf", names, maxFileBytes: 4096, maxBytes: 9 }),
        );
        equal(files.length, names.length);
        const shown = files.map((f) => f && new TextDecoder().decode(f.data));
        // "c" is past the 9-byte budget ("alpha" + "beta"); only regular files, no paths.
        deepStrictEqual(shown, ["alpha", ...Array(6).fill(undefined), "beta", undefined]);
        const st = Deno.statSync(`${root}/rf/a`);
        equal(Number(files[0]!.stat.ino), st.ino);
        equal(files[0]!.stat.size, 5n);
        equal(
          errnoOf(await c.readFiles({ dir: "nowhere", names, maxFileBytes: 9, maxBytes: 9 })),
          "ENOENT",
        );
        // Answers are assembled in buffers used again: several at once, each whole and its own.
        const many = Array.from({ length: 12 }, (_, i) => `m${i}`);
        for (const [i, name] of many.entries()) {
          await Deno.writeFile(`${root}/rf/${name}`, new Uint8Array(30_000 + i).fill(65 + i));
        }
        const answers = await Promise.all(
          [0, 1, 2, 3, 4, 5].map((k) =>
            c.readFiles({
              dir: "rf",
              names: many.slice(k * 2, k * 2 + 2),
              maxFileBytes: 65536,
              maxBytes: 512 * 1024,
            })
          ),
        );
        for (const [k, answer] of answers.entries()) {
          for (const [j, file] of valueOf(answer).entries()) {
            const i = k * 2 + j;
            equal(file?.data.length, 30_000 + i, many[i]);
            ok(file!.data.every((b) => b === 65 + i), `${many[i]}: its own bytes`);
          }
        }
      },
    );

    await t.step("unknown handles give EBADF", async () => {
      equal(errnoOf(await c.read({ handle: 999999, offset: 0n, size: 1 })), "EBADF");
      equal(errnoOf(await c.fsync({ handle: 999999, datasync: false })), "EBADF");
      equal(errnoOf(await c.lseek({ handle: 999999, offset: 0n, whence: 0 })), "EBADF");
    });

    await t.step("exits when stdin closes", async () => {
      equal(await h.stop(), 0);
    });
  } finally {
    await h.stop().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
});
