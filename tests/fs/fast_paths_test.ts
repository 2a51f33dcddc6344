// The round-trip savers of issue 6 keep their answers right: xattr probes answered locally,
// write-behind (errors and ordering), reads served from an open's read-ahead, directory
// listings brought by opendir, and parent attributes brought by create/unlink/rmdir.

import { deepStrictEqual, ok as assert } from "node:assert/strict";
import { type MountedFs, mountLocal, sh } from "./harness.ts";

async function withMount(
  fn: (fs: MountedFs) => Promise<void>,
  options: { writeBehind?: boolean; attrTimeout?: number; entryTimeout?: number } = {},
): Promise<void> {
  const fs = await mountLocal(options);
  try {
    await fn(fs);
  } finally {
    await fs.close();
  }
}

async function ok(fs: MountedFs, script: string): Promise<string> {
  const r = await sh(fs, script);
  if (r.code !== 0) throw new Error(`'${script}' failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** Runs `body` with a 256 KiB tmpfs mounted at tiny/ of the backing dir ("$M/tiny"). */
async function withTinyTmpfs(fs: MountedFs, body: () => Promise<void>): Promise<void> {
  await ok(fs, 'mkdir "$B/tiny" && mount -t tmpfs -o size=256k tmpfs "$B/tiny"');
  try {
    await body();
  } finally {
    await new Deno.Command("umount", { args: ["-l", `${fs.backing}/tiny`] }).output();
  }
}

Deno.test("fast paths: xattrs set inside or through the mount are seen right after a listing", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'touch "$B/plain" "$B/tagged" && setfattr -n user.k -v inside "$B/tagged"');
    // The listing tells the client which files have no xattrs at all.
    await ok(fs, 'ls -l "$M" >/dev/null');
    deepStrictEqual(await ok(fs, 'getfattr --only-values -n user.k "$M/tagged"'), "inside");
    const none = await sh(fs, 'getfattr -n user.k "$M/plain" 2>&1');
    assert(/No such attribute/.test(none.stdout), none.stdout);
    await ok(fs, 'setfattr -n user.k -v through "$M/plain"');
    deepStrictEqual(await ok(fs, 'getfattr --only-values -n user.k "$M/plain"'), "through");
    deepStrictEqual(
      await ok(fs, 'getfattr --absolute-names -d "$M/plain" | grep user.k'),
      'user.k="through"\n',
    );
  });
});

Deno.test("fast paths: write-behind keeps order and reports ENOSPC to the writer", async () => {
  await withMount(async (fs) => {
    await ok(
      fs,
      'head -c 9437184 /dev/urandom > "$B/src" && dd if="$B/src" of="$M/copy" bs=1M conv=fsync status=none',
    );
    deepStrictEqual(
      await ok(fs, 'sha256sum < "$M/copy"'),
      await ok(fs, 'sha256sum < "$B/src"'),
    );
    // Overwrites land in order: the last one wins.
    await ok(
      fs,
      'for i in 1 2 3 4 5 6 7 8; do printf "%s" "$i$i$i$i" | dd of="$M/copy" bs=4 seek=0 conv=notrunc status=none; done',
    );
    deepStrictEqual(await ok(fs, 'head -c 4 "$B/copy"'), "8888");
    await withTinyTmpfs(fs, async () => {
      const r = await sh(fs, 'dd if=/dev/zero of="$M/tiny/f" bs=64k count=32 2>&1; echo "rc=$?"');
      assert(/No space left on device/.test(r.stdout) && !/rc=0/.test(r.stdout), r.stdout);
      // The mount stays usable.
      await ok(fs, 'rm "$M/tiny/f" && echo fine > "$M/tiny/g"');
      deepStrictEqual(await Deno.readTextFile(`${fs.backing}/tiny/g`), "fine\n");
    });
  });
});

// Writes of 64 KiB into a 256 KiB tmpfs, each followed by a report line: which write failed.
const FILL_TINY = `python3 -c '
import os
fd = os.open(os.environ["M"] + "/tiny/f", os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(8):
    try:
        print(i, os.write(fd, bytes(65536)))
    except OSError as e:
        print(i, e.strerror)
        break
try:
    os.close(fd)
    print("close ok")
except OSError as e:
    print("close", e.strerror)
'`;

for (const writeBehind of [true, false]) {
  Deno.test(
    `fast paths: ENOSPC ${
      writeBehind
        ? "with write-behind reaches a later write or close"
        : "without write-behind reaches the write itself"
    }`,
    async () => {
      await withMount(async (fs) => {
        await withTinyTmpfs(fs, async () => {
          const out = await ok(fs, FILL_TINY);
          const lines = out.trim().split("\n");
          const failed = lines.findIndex((l) => /No space left on device/.test(l));
          assert(failed >= 0, out);
          // 4 × 64 KiB fill the tmpfs: the 5th write is the first one the container refuses.
          if (writeBehind) {
            assert(failed >= 5, out); // answered early, refused by a later call
          } else {
            const expected = ["0 65536", "1 65536", "2 65536", "3 65536"];
            deepStrictEqual(lines.slice(0, 5), [...expected, "4 No space left on device"]);
          }
        });
      }, { writeBehind });
    },
  );
}

Deno.test("fast paths: subdirectories walked ahead serve the next listing, and changes show", async () => {
  await withMount(async (fs) => {
    await ok(fs, 'mkdir -p "$B/p/a" "$B/p/b" && touch "$B/p/a/x" "$B/p/b/y"');
    const count = (method: string): number => fs.satellite.calls.filter((m) => m === method).length;
    const [listed, walked] = [count("opendir"), count("walk")];
    await ok(fs, 'ls "$M/p" >/dev/null');
    // p itself, then a and b walked ahead of time.
    for (let waited = 0; count("walk") === walked && waited < 5000; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    deepStrictEqual(count("opendir"), listed + 1, "p listed");
    assert(count("walk") > walked, "p/a and p/b walked ahead");
    const before = fs.satellite.calls.length;
    deepStrictEqual(await ok(fs, 'ls "$M/p/a"'), "x\n");
    deepStrictEqual(
      fs.satellite.calls.slice(before).filter((m) => m === "opendir"),
      [],
      "p/a walked ahead",
    );
    // A change through the mount drops what was listed ahead.
    await ok(fs, 'ls "$M/p" >/dev/null; touch "$M/p/b/z"');
    deepStrictEqual(await ok(fs, 'ls "$M/p/b"'), "y\nz\n");
    // A change inside the container shows within the entry timeout (1 s here).
    await ok(fs, 'mkdir "$B/p/c" && ls "$M/p" >/dev/null && touch "$B/p/c/inside"');
    await new Promise((r) => setTimeout(r, 1100));
    deepStrictEqual(await ok(fs, 'ls "$M/p/c"'), "inside\n");
  });
});

Deno.test("fast paths: fsync of a directory opened from a walk syncs it through a handle of its own", async () => {
  // Long timeouts: the listing ahead stays fresh however slow the machine is.
  await withMount(async (fs) => {
    await ok(fs, 'mkdir -p "$B/p/a" "$B/p/b" && touch "$B/p/a/x"');
    const count = (method: string): number => fs.rpcCalls.filter((c) => c.method === method).length;
    const [opendirs, releases, walks] = [count("opendir"), count("release"), count("walk")];
    await ok(fs, 'ls "$M/p" >/dev/null');
    // p listed (its handle closed when the kernel releases it), then p/a and p/b walked ahead.
    const settled = (): boolean => count("release") >= releases + 1 && count("walk") > walks;
    for (let waited = 0; !settled() && waited < 5000; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    deepStrictEqual([count("opendir"), count("release")], [opendirs + 1, releases + 1]);
    const before = fs.rpcCalls.length;
    const out = await ok(
      fs,
      `python3 -c 'import os; fd = os.open(os.environ["M"] + "/p/a", os.O_RDONLY); os.fsync(fd); print(os.listdir(fd)); os.close(fd)'`,
    );
    deepStrictEqual(out, "['x']\n");
    const during = fs.rpcCalls.slice(before).filter((c) =>
      !["lstat", "lookup", "walk", "forget"].includes(c.method)
    );
    // The open came from the walk (no opendir with a read-ahead); the fsync went
    // through a handle opened for it alone, closed right after.
    deepStrictEqual(during.map((c) => c.method), ["opendir", "fsync", "release"]);
    // p/a by its name in p, the node handle p got when it was listed.
    const { at, path } = during[0].params;
    deepStrictEqual([typeof at, path], ["number", "a"]);
  }, { attrTimeout: 60, entryTimeout: 60 });
});

Deno.test("fast paths: a read after a write through another descriptor sees the new bytes", async () => {
  await withMount(async (fs) => {
    await Deno.writeTextFile(`${fs.backing}/f`, "old contents\n");
    const out = await ok(
      fs,
      `python3 -c '
import os, sys
p = os.environ["M"] + "/f"
r = os.open(p, os.O_RDONLY)
w = os.open(p, os.O_WRONLY)
os.pwrite(w, b"NEW", 0)
os.fsync(w)
sys.stdout.write(os.pread(r, 100, 0).decode())
os.close(w); os.close(r)
'`,
    );
    deepStrictEqual(out, "NEW contents\n");
    // Small files read back whole, empty files read empty.
    await Deno.writeTextFile(`${fs.backing}/empty`, "");
    deepStrictEqual(await ok(fs, 'cat "$M/empty"; cat "$M/f"'), "NEW contents\n");
  });
});

Deno.test("fast paths: parent attributes after create, unlink, mkdir and rmdir match the backing dir", async () => {
  await withMount(async (fs) => {
    const both = async (path: string): Promise<[string, string]> => [
      await ok(fs, `stat -c '%h %s %Y' "$M/${path}"`),
      await ok(fs, `stat -c '%h %s %Y' "$B/${path}"`),
    ];
    await ok(fs, 'mkdir "$M/d" && sleep 1.1 && echo x > "$M/d/f"');
    let [m, b] = await both("d");
    deepStrictEqual(m, b);
    await ok(fs, 'mkdir "$M/d/e" && rmdir "$M/d/e" && rm "$M/d/f"');
    [m, b] = await both("d");
    deepStrictEqual(m, b);
    deepStrictEqual(await ok(fs, 'ls -A "$M/d" | wc -l'), "0\n");
  });
});
