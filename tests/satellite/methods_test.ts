// Every method of the protocol against a real satellite (deno run from source) over pipes,
// serving a temporary directory on tmpfs (/dev/shm: sparse files up to 2^63-1, user xattrs).

import { deepStrictEqual as eq, ok as assert, strictEqual as is } from "node:assert/strict";
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
import { code, ok, startSatellite } from "./harness.ts";

const S_IFMT = 0o170000;
const enc = new TextEncoder();

Deno.test("satellite serves every method over pipes", async (t) => {
  const root = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dfsat-" });
  const h = startSatellite(root);
  const c = h.client.call;
  try {
    await t.step("handshake", async () => {
      const hello = await h.client.ready;
      is(hello.protocol, PROTOCOL_VERSION);
      is(hello.buildId, "dev");
      is(hello.uid, 0);
      is(hello.root, root);
      is(hello.arch, Deno.build.arch);
    });

    await t.step("create, write, read, lstat with ns times", async () => {
      const r = ok(
        await c.create({
          path: "f.txt",
          flags: OpenFlags.O_RDWR,
          mode: 0o640,
          owner: { uid: 1234, gid: 4321 },
        }),
      );
      is(r.stat.mode, 0o100640);
      is(r.stat.uid, 1234);
      is(r.stat.gid, 4321);
      is(ok(await c.write({ handle: r.handle, offset: 0n, data: enc.encode("hello world") })), 11);
      const data = ok(await c.read({ handle: r.handle, offset: 6n, size: 100 }));
      is(new TextDecoder().decode(data), "world");
      eq(ok(await c.read({ handle: r.handle, offset: 100n, size: 10 })).length, 0);
      ok(await c.release({ handle: r.handle }));
      const st = ok(await c.lstat({ path: "f.txt" }));
      const host = Deno.lstatSync(`${root}/f.txt`);
      is(st.size, 11n);
      is(Number(st.ino), host.ino);
      is(st.nlink, 1);
      is(st.mtimeSec, Math.floor(host.mtime!.getTime() / 1000));
      assert(st.mtimeNsec >= 0 && st.mtimeNsec < 1e9);
      is(st.blocks > 0n, true);
      is(code(await c.release({ handle: r.handle })), "EBADF");
    });

    await t.step("create: O_EXCL gives EEXIST, without it opens the existing file", async () => {
      is(
        code(
          await c.create({
            path: "f.txt",
            flags: OpenFlags.O_RDWR | OpenFlags.O_EXCL,
            mode: 0o600,
          }),
        ),
        "EEXIST",
      );
      const r = ok(await c.create({ path: "f.txt", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      is(r.stat.size, 11n);
      is(r.stat.uid, 1234); // not re-chowned
      ok(await c.release({ handle: r.handle }));
    });

    await t.step("open: errors", async () => {
      is(code(await c.open({ path: "missing", flags: 0 })), "ENOENT");
      is(code(await c.open({ path: "f.txt/x", flags: 0 })), "ENOTDIR");
      is(code(await c.open({ path: "", flags: OpenFlags.O_WRONLY })), "EISDIR");
    });

    await t.step("offsets beyond 2^53 (sparse file); fstat after unlink", async () => {
      const r = ok(await c.create({ path: "sparse", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      const far = (1n << 60n) + 12345n;
      is(ok(await c.write({ handle: r.handle, offset: far, data: enc.encode("far") })), 3);
      is(ok(await c.lstat({ path: "sparse" })).size, far + 3n);
      is(
        new TextDecoder().decode(ok(await c.read({ handle: r.handle, offset: far, size: 3 }))),
        "far",
      );
      is(
        ok(await c.lseek({ handle: r.handle, offset: 0n, whence: SEEK_DATA })) > (1n << 59n),
        true,
      );
      is(ok(await c.lseek({ handle: r.handle, offset: 0n, whence: SEEK_HOLE })), 0n);
      is(code(await c.read({ handle: r.handle, offset: 1n << 63n, size: 1 })), "EINVAL");
      ok(await c.ftruncate({ handle: r.handle, size: 5n }));
      is(ok(await c.lstat({ path: "sparse" })).size, 5n);
      ok(await c.unlink({ path: "sparse" }));
      const unlinked = ok(await c.fstat({ handle: r.handle }));
      is(unlinked.size, 5n);
      is(unlinked.nlink, 0);
      ok(await c.release({ handle: r.handle }));
      is(code(await c.fstat({ handle: r.handle })), "EBADF");
    });

    await t.step("1 MiB read and write round trip", async () => {
      const r = ok(await c.create({ path: "big", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      const data = new Uint8Array(1 << 20);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      is(ok(await c.write({ handle: r.handle, offset: 4096n, data })), data.length);
      const back = ok(await c.read({ handle: r.handle, offset: 4096n, size: 1 << 20 }));
      eq(back, data);
      is(code(await c.read({ handle: r.handle, offset: 0n, size: (1 << 20) + 1 })), "EINVAL");
      ok(await c.fsync({ handle: r.handle, datasync: false }));
      ok(await c.fsync({ handle: r.handle, datasync: true }));
      ok(await c.flush({ handle: r.handle }));
      ok(await c.release({ handle: r.handle }));
    });

    await t.step("fallocate, punch hole, SEEK_DATA/SEEK_HOLE", async () => {
      const r = ok(await c.create({ path: "alloc", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      ok(await c.fallocate({ handle: r.handle, mode: 0, offset: 0n, length: 1n << 20n }));
      is(ok(await c.lstat({ path: "alloc" })).size, 1n << 20n);
      ok(await c.write({ handle: r.handle, offset: 0n, data: new Uint8Array(8192).fill(1) }));
      // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
      ok(await c.fallocate({ handle: r.handle, mode: 3, offset: 0n, length: 4096n }));
      is(ok(await c.lseek({ handle: r.handle, offset: 0n, whence: SEEK_DATA })), 4096n);
      is(code(await c.lseek({ handle: r.handle, offset: 2n << 20n, whence: SEEK_DATA })), "ENXIO");
      ok(await c.release({ handle: r.handle }));
    });

    await t.step("copyFileRange", async () => {
      const a = ok(await c.open({ path: "f.txt", flags: 0 }));
      const b = ok(await c.create({ path: "copy", flags: OpenFlags.O_RDWR, mode: 0o600 }));
      const n = ok(
        await c.copyFileRange({
          handleIn: a.handle,
          offsetIn: 6n,
          handleOut: b.handle,
          offsetOut: 2n,
          length: 5n,
          flags: 0,
        }),
      );
      is(n, 5n);
      eq(Deno.readFileSync(`${root}/copy`), new Uint8Array([0, 0, ...enc.encode("world")]));
      ok(await c.release({ handle: a.handle }));
      ok(await c.release({ handle: b.handle }));
    });

    await t.step("mkdir, readdir in batches with plus, rmdir", async () => {
      const st = ok(await c.mkdir({ path: "d", mode: 0o2750, owner: { uid: 7, gid: 8 } }));
      is(st.mode, 0o40750); // like mkdir(2): set-gid comes from the parent, not from mode
      is(st.uid, 7);
      for (let i = 0; i < 300; i++) Deno.writeFileSync(`${root}/d/n${i}`, new Uint8Array(i));
      Deno.symlinkSync("n1", `${root}/d/link`);
      const dir = ok(await c.opendir({ path: "d" }));
      const names = new Map<string, bigint | undefined>();
      let offset = 0n;
      let batches = 0;
      for (;;) {
        const r = ok(await c.readdir({ handle: dir.handle, offset, plus: true, maxEntries: 50 }));
        batches++;
        for (const e of r.entries) {
          names.set(String(e.name), e.stat?.size);
          if (e.name === "link") is(e.stat!.mode & S_IFMT, 0o120000);
          if (e.name === "n5") is(e.type, 8);
          offset = e.offset;
        }
        if (r.eof) break;
      }
      is(names.size, 303);
      is(names.get("n299"), 299n);
      is(names.get("."), undefined);
      assert(batches >= 7);
      // restart from an earlier cookie (rewinddir) and without plus
      const again = ok(await c.readdir({ handle: dir.handle, offset: 0n, plus: false }));
      is(again.entries.length, 256);
      is(again.entries[0].stat, undefined);
      // a cookie from the middle resumes right after that entry, also on another handle
      const cookie = again.entries[99].offset;
      const other = ok(await c.opendir({ path: "d" }));
      const resumed = ok(
        await c.readdir({ handle: other.handle, offset: cookie, plus: false, maxEntries: 5 }),
      );
      eq(resumed.entries.map((e) => e.name), again.entries.slice(100, 105).map((e) => e.name));
      ok(await c.release({ handle: other.handle }));
      ok(await c.release({ handle: dir.handle }));
      is(code(await c.rmdir({ path: "d" })), "ENOTEMPTY");
      is(code(await c.readdir({ handle: dir.handle, offset: 0n, plus: false })), "EBADF");
      is(code(await c.opendir({ path: "f.txt" })), "ENOTDIR");
      is(code(await c.mkdir({ path: "d", mode: 0o700 })), "EEXIST");
      ok(await c.mkdir({ path: "empty", mode: 0o700 }));
      ok(await c.rmdir({ path: "empty" }));
      is(code(await c.rmdir({ path: "empty" })), "ENOENT");
    });

    await t.step("names that are not UTF-8 travel as bytes", async () => {
      const raw = new Uint8Array([0x62, 0xff, 0xfe, 0x2e, 0x74]); // "b\xff\xfe.t"
      const st = ok(await c.mknod({ path: raw, mode: 0o100600, rdevMajor: 0, rdevMinor: 0 }));
      is(st.mode, 0o100600);
      const dir = ok(await c.opendir({ path: "" }));
      const r = ok(
        await c.readdir({ handle: dir.handle, offset: 0n, plus: false, maxEntries: 4096 }),
      );
      const found = r.entries.find((e) => e.name instanceof Uint8Array);
      eq(found?.name, raw);
      ok(await c.release({ handle: dir.handle }));
      ok(await c.unlink({ path: raw }));
    });

    await t.step("unlink, rename, NOREPLACE, EXCHANGE", async () => {
      Deno.writeTextFileSync(`${root}/r1`, "one");
      Deno.writeTextFileSync(`${root}/r2`, "two");
      is(code(await c.rename({ from: "r1", to: "r2", flags: RENAME_NOREPLACE })), "EEXIST");
      ok(await c.rename({ from: "r1", to: "r2", flags: RENAME_EXCHANGE }));
      is(Deno.readTextFileSync(`${root}/r1`), "two");
      ok(await c.rename({ from: "r1", to: "d/moved", flags: 0 }));
      is(Deno.readTextFileSync(`${root}/d/moved`), "two");
      is(code(await c.rename({ from: "r1", to: "x", flags: 0 })), "ENOENT");
      ok(await c.unlink({ path: "d/moved" }));
      is(code(await c.unlink({ path: "d/moved" })), "ENOENT");
      is(code(await c.unlink({ path: "d" })), "EISDIR");
    });

    await t.step("link, symlink, readlink", async () => {
      const st = ok(await c.link({ from: "f.txt", to: "hard" }));
      is(st.nlink, 2);
      is(code(await c.link({ from: "f.txt", to: "hard" })), "EEXIST");
      const sl = ok(
        await c.symlink({ path: "sym", target: "../outside", owner: { uid: 5, gid: 6 } }),
      );
      is(sl.mode & S_IFMT, 0o120000);
      is(sl.uid, 5);
      is(ok(await c.readlink({ path: "sym" })), "../outside");
      is(code(await c.readlink({ path: "f.txt" })), "EINVAL");
      const rawTarget = new Uint8Array([0x61, 0x80]);
      ok(await c.symlink({ path: "sym2", target: rawTarget }));
      eq(ok(await c.readlink({ path: "sym2" })), rawTarget);
    });

    await t.step(
      "chmod, chown, utimens, truncate, setattr without following symlinks",
      async () => {
        ok(await c.chmod({ path: "f.txt", mode: 0o4755 }));
        is(ok(await c.lstat({ path: "f.txt" })).mode, 0o104755);
        is(code(await c.chmod({ path: "sym", mode: 0o777 })), "EOPNOTSUPP");
        ok(await c.chown({ path: "sym", uid: 11 }));
        const sl = ok(await c.lstat({ path: "sym" }));
        is(sl.uid, 11);
        is(sl.gid, 6);
        ok(
          await c.utimens({
            path: "f.txt",
            atime: { sec: 1000, nsec: 123456789 },
            mtime: { sec: -5, nsec: 1 },
          }),
        );
        let st = ok(await c.lstat({ path: "f.txt" }));
        eq([st.atimeSec, st.atimeNsec, st.mtimeSec, st.mtimeNsec], [1000, 123456789, -5, 1]);
        ok(
          await c.utimens({
            path: "f.txt",
            atime: { sec: 0, nsec: UTIME_OMIT },
            mtime: { sec: 0, nsec: UTIME_NOW },
          }),
        );
        st = ok(await c.lstat({ path: "f.txt" }));
        is(st.atimeSec, 1000);
        assert(st.mtimeSec > 1_600_000_000);
        ok(await c.utimens({ path: "sym", mtime: { sec: 42, nsec: 0 } }));
        is(ok(await c.lstat({ path: "sym" })).mtimeSec, 42);
        is(Deno.statSync(`${root}/f.txt`).mtime!.getTime() > 42000, true);
        ok(await c.truncate({ path: "f.txt", size: 3n }));
        is(ok(await c.lstat({ path: "f.txt" })).size, 3n);
        is(code(await c.truncate({ path: "sym", size: 0n })), "ELOOP");
        const after = ok(
          await c.setattr({
            path: "f.txt",
            mode: 0o600,
            uid: 99,
            gid: 98,
            size: 1n,
            mtime: { sec: 77, nsec: 5 },
          }),
        );
        eq(
          [after.mode, after.uid, after.gid, after.size, after.mtimeSec, after.mtimeNsec],
          [0o100600, 99, 98, 1n, 77, 5],
        );
        is(code(await c.setattr({ path: "nope", mode: 0o600 })), "ENOENT");
        // truncate through an open handle, even after the mode forbids writing
        const w = ok(await c.open({ path: "f.txt", flags: OpenFlags.O_RDWR }));
        ok(await c.chmod({ path: "f.txt", mode: 0o400 }));
        is(ok(await c.setattr({ path: "f.txt", handle: w.handle, size: 9n })).size, 9n);
        ok(await c.release({ handle: w.handle }));
      },
    );

    await t.step("mknod fifo and char device", async () => {
      const fifo = ok(await c.mknod({ path: "fifo", mode: 0o10644, rdevMajor: 0, rdevMinor: 0 }));
      is(fifo.mode, 0o10644);
      const dev = ok(await c.mknod({ path: "null", mode: 0o20666, rdevMajor: 1, rdevMinor: 3 }));
      eq([dev.mode & S_IFMT, dev.rdevMajor, dev.rdevMinor], [0o20000, 1, 3]);
      const big = ok(
        await c.mknod({ path: "bigdev", mode: 0o60600, rdevMajor: 259, rdevMinor: 70000 }),
      );
      eq([big.rdevMajor, big.rdevMinor], [259, 70000]);
    });

    await t.step("statfs", async () => {
      const s = ok(await c.statfs({ path: "" }));
      assert(s.bsize > 0 && s.blocks > 0n && s.namemax === 255);
      is(code(await c.statfs({ path: "missing" })), "ENOENT");
    });

    await t.step("xattrs", async () => {
      ok(await c.setxattr({ path: "f.txt", name: "user.k", value: enc.encode("v1"), flags: 0 }));
      eq(ok(await c.getxattr({ path: "f.txt", name: "user.k" })), enc.encode("v1"));
      is(
        code(await c.setxattr({ path: "f.txt", name: "user.k", value: enc.encode("x"), flags: 1 })),
        "EEXIST",
      );
      ok(
        await c.setxattr({ path: "f.txt", name: "user.empty", value: new Uint8Array(0), flags: 0 }),
      );
      eq(ok(await c.getxattr({ path: "f.txt", name: "user.empty" })).length, 0);
      const names = ok(await c.listxattr({ path: "f.txt" }));
      assert(names.includes("user.k") && names.includes("user.empty"));
      ok(await c.removexattr({ path: "f.txt", name: "user.k" }));
      is(code(await c.getxattr({ path: "f.txt", name: "user.k" })), "ENODATA");
      is(code(await c.getxattr({ path: "missing", name: "user.k" })), "ENOENT");
      ok(await c.setxattr({ path: "", name: "user.root", value: enc.encode("r"), flags: 0 }));
      eq(ok(await c.getxattr({ path: "", name: "user.root" })), enc.encode("r"));
    });

    await t.step("unknown handles give EBADF", async () => {
      is(code(await c.read({ handle: 999999, offset: 0n, size: 1 })), "EBADF");
      is(code(await c.fsync({ handle: 999999, datasync: false })), "EBADF");
      is(code(await c.lseek({ handle: 999999, offset: 0n, whence: 0 })), "EBADF");
    });

    await t.step("exits when stdin closes", async () => {
      is(await h.stop(), 0);
    });
  } finally {
    await h.stop().catch(() => {});
    await Deno.remove(root, { recursive: true });
  }
});
