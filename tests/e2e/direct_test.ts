// The direct channel on a local engine (src/mount/direct.ts): the client talks to the satellite
// over its socket in the container, reached through /proc/<pid>/cwd, and the upload (the socket's
// directory) is gone once it connected; `-o no_direct` keeps to the exec stream. Either way the
// mount works the same.

import { equal, ok } from "node:assert/strict";
import { docker, readInside, sh, withMount } from "./harness.ts";

for (const direct of [true, false]) {
  const name = direct ? "its direct socket" : "the exec stream (-o no_direct)";
  Deno.test(`e2e: a local mount talks to the satellite over ${name}`, async () => {
    await withMount("glibc", async (m) => {
      equal(m.stderr().includes("on its direct socket"), direct, m.stderr());
      const w = await sh(m.mountpoint, `echo "over ${name}" > "$M/tmp/direct.txt"`);
      equal(w.code, 0, w.stderr);
      equal(await readInside(m.container, "/tmp/direct.txt"), `over ${name}\n`);
      const listed = await sh(m.mountpoint, `ls "$M/usr/bin" | wc -l`);
      ok(Number(listed.stdout) > 100, listed.stdout);
      // Nothing of the upload is left in the container (its socket neither).
      const left = await docker(["exec", m.container, "sh", "-c", "ls -a / /tmp"]);
      ok(!left.stdout.includes(".dockerfuse-"), left.stdout);
    }, { args: direct ? [] : ["-o", "no_direct"] });
  });
}
