// The FUSE POSIX behaviour table (tests/fuse/posix_table.ts) run through dockerfuse on each test
// image: one mount per image, each case in a fresh directory inside the container, checked on
// the container's own filesystem (overlayfs here) through the satellite.

import { ALL_KINDS } from "../../tasks/testbed/mod.ts";
import { stepPosixTable } from "../fuse/posix_table.ts";
import { startMount } from "./harness.ts";

for (const kind of ALL_KINDS) {
  Deno.test(`e2e ${kind}: the POSIX table through dockerfuse`, async (t) => {
    const m = await startMount(kind, { args: ["--allow-other"] });
    try {
      await stepPosixTable(t, `${m.mountpoint}/dockerfuse-posix`);
    } finally {
      await m.cleanup();
    }
  });
}
