// Small files read ahead of their opens: a process opening a directory's files one after
// another gets them from one `readFiles` round trip instead of an OPEN each. What it reads must
// be what the container holds, also for a file changed inside the container after the read
// ahead, and for files that do not qualify (too large, empty, not regular).

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { docker, loggedRpcs, sh, withMount } from "./harness.ts";

const FILES = 60;

Deno.test("e2e: a directory's small files are read ahead in one call and read as the container has them", async () => {
  await withMount("glibc", async (m) => {
    // f00..f59: small texts; f07 larger than read ahead takes; f11 empty; f13 a directory.
    await docker([
      "exec",
      m.container,
      "sh",
      "-c",
      `mkdir /sf && cd /sf && i=0; while [ $i -lt ${FILES} ]; do ` +
      `n=$(printf f%02d $i); echo "v1 $n" > $n; i=$((i+1)); done; ` +
      `head -c 100000 /dev/urandom > f07; : > f11; rm f13; mkdir f13`,
    ]);
    const names = (await sh(m.mountpoint, `ls "$M/sf"`)).stdout.trim().split("\n");
    equal(names.length, FILES);
    const from = m.stderr().length;
    // Opened one after another, in readdir order, as find and tar do.
    const first = await sh(
      m.mountpoint,
      `cd "$M/sf" && for f in $(ls -U); do [ -f $f ] && md5sum $f; done`,
    );
    equal(first.code, 0, first.stderr);
    const inside = await docker([
      "exec",
      m.container,
      "sh",
      "-c",
      `cd /sf && for f in $(ls -U); do [ -f $f ] && md5sum $f; done`,
    ]);
    deepStrictEqual(first.stdout, inside.stdout);
    const opens = loggedRpcs(m.stderr(), "open", from);
    const fetches = loggedRpcs(m.stderr(), "readFiles", from);
    console.log(
      `${FILES - 1} files: ${opens} opens and ${fetches} readFiles reached the satellite`,
    );
    ok(fetches >= 1, `readFiles calls: ${fetches}`);
    // f07 (too large) and f11 (empty) are opened as before; the others mostly come read ahead.
    ok(opens <= 12, `${opens} opens reached the satellite for ${FILES - 1} files`);

    // A file changed inside the container after it was read ahead shows its new contents.
    await docker(["exec", m.container, "sh", "-c", "cp -a /sf /sg"]);
    await sh(m.mountpoint, `ls "$M/sg" >/dev/null`);
    const mid = m.stderr().length;
    const two = await sh(m.mountpoint, `cat "$M/sg/f00" "$M/sg/f01"`);
    equal(two.code, 0, two.stderr);
    for (let i = 0; i < 100 && loggedRpcs(m.stderr(), "readFiles", mid) === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    ok(loggedRpcs(m.stderr(), "readFiles", mid) >= 1, "the next ones were read ahead");
    await docker(["exec", m.container, "sh", "-c", "echo v2, changed > /sg/f40"]);
    // Once the mount shows the new size, a read shows the new contents.
    for (let i = 0; i < 100; i++) {
      if ((await sh(m.mountpoint, `stat -c %s "$M/sg/f40"`)).stdout.trim() === "12") break;
      await new Promise((r) => setTimeout(r, 20));
    }
    equal((await sh(m.mountpoint, `cat "$M/sg/f40"`)).stdout, "v2, changed\n");
  }, { args: ["--debug"] });
});
