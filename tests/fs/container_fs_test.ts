// The container filesystem through a real kernel mount, served by a local satellite: checks
// that FUSE operations map onto the satellite faithfully (results seen on the backing dir).

import { deepStrictEqual, ok as assert } from "node:assert/strict";
import { type MountedFs, mountLocal, sh } from "./harness.ts";

async function withMount(
  fn: (fs: MountedFs) => Promise<void>,
  options: Parameters<typeof mountLocal>[0] = {},
): Promise<void> {
  const fs = await mountLocal(options);
  try {
    await fn(fs);
  } finally {
    await fs.close();
  }
}

async function ok(fs: MountedFs, script: string, user?: number): Promise<string> {
  const r = await sh(fs, script, { user });
  if (r.code !== 0) throw new Error(`'${script}' failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

Deno.test("fs: files written through the mount land in the backing dir, and back", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'printf "hello" > "$M/a.txt"');
    deepStrictEqual(await Deno.readTextFile(`${fs.backing}/a.txt`), "hello");
    await Deno.writeTextFile(`${fs.backing}/b.txt`, "from inside");
    deepStrictEqual(await ok(fs, 'cat "$M/b.txt"'), "from inside");
  });
});

Deno.test("fs: directories, rename, unlink, rmdir and ENOTEMPTY", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'mkdir -p "$M/d/e" && echo x > "$M/d/e/f" && mv "$M/d" "$M/g"');
    deepStrictEqual(await Deno.readTextFile(`${fs.backing}/g/e/f`), "x\n");
    const r = await sh(fs, 'rmdir "$M/g/e" 2>&1');
    assert(r.code !== 0 && /not empty/i.test(r.stdout), r.stdout);
    await ok(fs, 'rm "$M/g/e/f" && rmdir "$M/g/e" "$M/g"');
    deepStrictEqual([...Deno.readDirSync(fs.backing)].length, 0);
  });
});

Deno.test("fs: a directory of 3000 entries lists completely (batched readdir)", async () => {
  await withMount(async (fs) => {
    await Deno.mkdir(`${fs.backing}/many`);
    for (let i = 0; i < 3000; i++) await Deno.writeTextFile(`${fs.backing}/many/f${i}`, "");
    const names = (await ok(fs, 'ls -1 "$M/many"')).trim().split("\n");
    deepStrictEqual(names.length, 3000);
    deepStrictEqual(new Set(names).size, 3000);
    const long = (await ok(fs, 'ls -l "$M/many" | grep -c "^-"')).trim();
    deepStrictEqual(long, "3000");
  });
});

Deno.test("fs: new files are owned by the calling uid/gid; set-group-ID dirs pass their group", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'mkdir "$M/pub" && chmod 1777 "$M/pub"');
    await ok(fs, 'echo x > "$M/pub/mine" && mkdir "$M/pub/dir"', 65534);
    const file = await Deno.lstat(`${fs.backing}/pub/mine`);
    deepStrictEqual([file.uid, file.gid], [65534, 65534]);
    deepStrictEqual((await Deno.lstat(`${fs.backing}/pub/dir`)).uid, 65534);
    await ok(fs, 'mkdir "$M/sg" && chown 0:100 "$M/sg" && chmod 2777 "$M/sg"');
    await ok(fs, 'echo y > "$M/sg/f" && mkdir "$M/sg/sub"', 65534);
    const inherited = await Deno.lstat(`${fs.backing}/sg/f`);
    deepStrictEqual([inherited.uid, inherited.gid], [65534, 100]);
    const sub = await Deno.lstat(`${fs.backing}/sg/sub`);
    deepStrictEqual(sub.gid, 100);
    assert((sub.mode! & 0o2000) !== 0, "a subdirectory inherits set-group-ID");
  });
});

Deno.test("fs: a file made in a set-group-ID directory made inside the container gets its group", async () => {
  await withMount(async (fs) => {
    // Made on the container side: the mount learns of it only through LOOKUP.
    await ok(fs, 'mkdir "$B/shared" && chown 0:100 "$B/shared" && chmod 2775 "$B/shared"');
    await ok(fs, 'touch "$M/shared/f" && mkdir "$M/shared/d"');
    deepStrictEqual((await Deno.lstat(`${fs.backing}/shared/f`)).gid, 100);
    deepStrictEqual((await Deno.lstat(`${fs.backing}/shared/d`)).gid, 100);
  });
});

Deno.test("fs: files that report size 0 (procfs) are read whole right after a lookup", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'mkdir "$B/proc" && mount -t proc proc "$B/proc"');
    try {
      const status = await ok(fs, 'cat "$M/proc/1/status"');
      assert(/^Name:/m.test(status) && /^Pid:\s+1$/m.test(status), status);
      const version = await ok(fs, 'cat "$M/proc/version"');
      assert(version.startsWith("Linux version"), version);
    } finally {
      await new Deno.Command("umount", { args: ["-l", `${fs.backing}/proc`] }).output();
    }
  });
});

Deno.test("fs: permissions are enforced for other users (EACCES)", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'echo secret > "$M/private" && chmod 600 "$M/private"');
    const r = await sh(fs, 'cat "$M/private"', { user: 65534 });
    assert(r.code !== 0 && /denied/i.test(r.stderr), r.stderr);
    const w = await sh(fs, 'echo x > "$M/new"', { user: 65534 });
    assert(w.code !== 0 && /denied/i.test(w.stderr), w.stderr);
  });
});

Deno.test("fs: hard links share an inode and count nlink; symlinks read back", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'echo data > "$M/orig" && ln "$M/orig" "$M/hard" && ln -s orig "$M/soft"');
    const out = (await ok(fs, 'stat -c "%i %h" "$M/orig" "$M/hard"; readlink "$M/soft"')).split(
      "\n",
    );
    deepStrictEqual(out[0], out[1]);
    deepStrictEqual(out[0]!.split(" ")[1], "2");
    deepStrictEqual(out[2], "orig");
    deepStrictEqual((await Deno.lstat(`${fs.backing}/orig`)).nlink, 2);
    assert((await Deno.lstat(`${fs.backing}/soft`)).isSymlink);
  });
});

Deno.test("fs: chmod, chown and nanosecond utimens reach the backing file", async () => {
  await withMount(async (fs) => {
    await ok(
      fs,
      'touch "$M/t" && chmod 640 "$M/t" && chown 12:34 "$M/t" && ' +
        'touch -d "2001-02-03 04:05:06.123456789" "$M/t"',
    );
    const out = await ok(fs, `stat -c "%a %u %g %y" "$B/t"`);
    deepStrictEqual(out.trim().split(" ").slice(0, 4).join(" "), "640 12 34 2001-02-03");
    assert(out.includes("04:05:06.123456789"), out);
    const through = await ok(fs, `stat -c "%y" "$M/t"`);
    assert(through.includes("04:05:06.123456789"), through);
  });
});

Deno.test("fs: an unlinked open file stays readable through its handle", async () => {
  await withMount(async (fs) => {
    const out = await ok(
      fs,
      'echo kept > "$M/u" && exec 3< "$M/u" && rm "$M/u" && cat <&3 && ls "$M"',
    );
    deepStrictEqual(out, "kept\n");
  });
});

Deno.test("fs: large sparse offsets, truncate, xattrs, statfs and fifos", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'printf end | dd of="$M/sparse" bs=1 seek=5000000000 conv=notrunc 2>/dev/null');
    deepStrictEqual((await Deno.lstat(`${fs.backing}/sparse`)).size, 5_000_000_003);
    deepStrictEqual(await ok(fs, 'tail -c 3 "$M/sparse"'), "end");
    await ok(fs, 'truncate -s 10 "$M/sparse"');
    deepStrictEqual((await Deno.lstat(`${fs.backing}/sparse`)).size, 10);
    const x = await sh(
      fs,
      'touch "$M/x" && setfattr -n user.k -v v1 "$M/x" && getfattr --only-values -n user.k "$M/x"',
    );
    if (x.code === 127) throw new Error("setfattr/getfattr missing (Debian package attr)");
    deepStrictEqual(x.stdout, "v1");
    const df = await ok(fs, 'stat -f -c "%b %S" "$M"');
    assert(Number(df.split(" ")[0]) > 0, df);
    await ok(fs, 'mkfifo "$M/fifo"');
    assert((await Deno.lstat(`${fs.backing}/fifo`)).isFifo);
  });
});

Deno.test("fs: with the writeback cache, partial writes through write-only opens keep the rest", async () => {
  await withMount(async (fs) => {
    await Deno.writeTextFile(`${fs.backing}/w.txt`, "abcdefgh");
    // dd opens O_WRONLY; older kernels read the page around byte 3 through that handle.
    await ok(
      fs,
      'printf X | dd of="$M/w.txt" bs=1 seek=3 conv=notrunc 2>/dev/null && sync "$M/w.txt"',
    );
    deepStrictEqual(await ok(fs, 'cat "$M/w.txt"'), "abcXefgh");
    await fs.session.unmount({ lazy: false });
    deepStrictEqual(await Deno.readTextFile(`${fs.backing}/w.txt`), "abcXefgh");
  }, { writebackCache: true });
});
