// The FUSE POSIX behaviour table (tests/fuse/posix_table.ts) run through an engine mount, in a
// container's directory: the tree must hand every operation to the container as a single mount
// does (paths, identities, renames, hard links, permissions).

import { stepPosixTable } from "../fuse/posix_table.ts";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { startEngine } from "./harness.ts";

Deno.test("engine: the POSIX table under containers/<name>", async (t) => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const name = `dfe-tree-${crypto.randomUUID().slice(0, 8)}-posix`;
  await startTestContainer(bed, "musl", { name });
  const run = await startEngine(["--allow-other"]);
  try {
    await stepPosixTable(t, `${run.mountpoint}/containers/${name}/dockerfuse-posix`);
  } finally {
    await run.cleanup();
    await removeTestContainer(bed, name);
  }
});
