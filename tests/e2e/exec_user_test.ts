// The exec user as a user meets it, through the CLI: a FROM scratch container (no /etc/passwd)
// mounts by default; `--user root` there is refused naming the user (exit code 7), never with a
// protocol error; `--user 0` works like `docker exec --user 0`; a non-root user needs a /tmp to
// upload into, which scratch lacks (refused, saying so) and the non-root image has.

import { equal, match, ok } from "node:assert/strict";
import { cliRunArgs } from "../../src/cli/launch.ts";
import {
  ensureTestBed,
  NONROOT_UID,
  removeTestContainer,
  startTestContainer,
} from "../../tasks/testbed/mod.ts";
import { isMounted, startMount } from "./harness.ts";

async function refused(id: string, dir: string, user: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(["mount", "--user", user, id, dir]),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  equal(out.code, 7, stderr);
  ok(!/frame of \d+ bytes|protocol/.test(stderr), stderr);
  ok(!(await isMounted(dir)));
  return stderr;
}

Deno.test("e2e: the exec user in FROM scratch and non-root images, by name and by number", async () => {
  const bed = await ensureTestBed({ kinds: ["scratch", "nonroot"] });
  const scratch = await startTestContainer(bed, "scratch");
  const nonroot = await startTestContainer(bed, "nonroot");
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-e2e-" });
  try {
    match(
      await refused(scratch, dir, "root"),
      /Cannot run the satellite as 'root' in '[^']+': the container has no \/etc\/passwd/,
    );
    match(await refused(scratch, dir, "65534:65534"), /no \/tmp to upload into for uid 65534/);
    for (
      const [id, user, uid, kind] of [
        [scratch, "0", 0, "scratch"],
        [nonroot, "app", NONROOT_UID, "nonroot"],
      ] as const
    ) {
      const m = await startMount(kind, { container: id, mountpoint: dir, args: ["--user", user] });
      try {
        match(m.stderr(), new RegExp(`Satellite ready .* uid ${uid}\\)`));
        ok((await Deno.readTextFile(`${dir}/data/hello.txt`)).startsWith(`hello from ${kind}`));
        equal(await m.stop(), 0, m.stderr());
      } finally {
        await m.cleanup();
      }
    }
  } finally {
    await removeTestContainer(bed, scratch);
    await removeTestContainer(bed, nonroot);
    await Deno.remove(dir, { recursive: true });
  }
});
