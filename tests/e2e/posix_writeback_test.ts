// The FUSE POSIX table through dockerfuse with --writeback-cache (the kernel caches writes and
// sends them later, possibly merged): once, on the glibc image, checked like posix_test.ts.

import { stepPosixTable } from "../fuse/posix_table.ts";
import { startMount } from "./harness.ts";

Deno.test("e2e glibc: the POSIX table through dockerfuse --writeback-cache", async (t) => {
  const m = await startMount("glibc", { args: ["--allow-other", "--writeback-cache"] });
  try {
    await stepPosixTable(t, `${m.mountpoint}/dockerfuse-posix-writeback`);
  } finally {
    await m.cleanup();
  }
});
