// The FUSE POSIX table through dockerfuse with --writeback-cache (the kernel caches writes and
// sends them later, possibly merged): once, on the glibc image, checked like posix_test.ts.

import { POSIX_TABLE } from "../fuse/posix_table.ts";
import { startMount } from "./harness.ts";

Deno.test("e2e glibc: the POSIX table through dockerfuse --writeback-cache", async (t) => {
  const m = await startMount("glibc", { args: ["--allow-other", "--writeback-cache"] });
  try {
    const base = `${m.mountpoint}/dockerfuse-posix-writeback`;
    await Deno.mkdir(base);
    await Deno.chmod(base, 0o777);
    for (const [i, { name, run }] of POSIX_TABLE.entries()) {
      await t.step(name, async () => {
        const dir = `${base}/${i}`;
        await Deno.mkdir(dir);
        await Deno.chmod(dir, 0o777);
        await run(dir);
      });
    }
  } finally {
    await m.cleanup();
  }
});
