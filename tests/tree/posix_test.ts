// The FUSE POSIX behaviour table (tests/fuse/posix_table.ts) run through an engine mount, in a
// container's directory: the tree must hand every operation to the container as a single mount
// does (paths, identities, renames, hard links, permissions).

import { POSIX_TABLE } from "../fuse/posix_table.ts";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { startEngine } from "./harness.ts";

Deno.test("engine: the POSIX table under containers/<name>", async (t) => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const name = `dfe-tree-${crypto.randomUUID().slice(0, 8)}-posix`;
  await startTestContainer(bed, "musl", { name });
  const run = await startEngine(["--allow-other"]);
  try {
    const base = `${run.mountpoint}/containers/${name}/dockerfuse-posix`;
    await Deno.mkdir(base);
    await Deno.chmod(base, 0o777);
    for (const [i, { name: step, run: check }] of POSIX_TABLE.entries()) {
      await t.step(step, async () => {
        const dir = `${base}/${i}`;
        await Deno.mkdir(dir);
        await Deno.chmod(dir, 0o777);
        await check(dir);
      });
    }
  } finally {
    await run.cleanup();
    await removeTestContainer(bed, name);
  }
});
