// Copyright 2026 the dockerfuse authors. MIT license.
// The reader worker's failure policy: a read failing with an errno that does not mean "gone" is
// retried (and said) before the device ends, so one odd failure does not end a mount.

import { deepStrictEqual, ok } from "node:assert/strict";
import { ERRNO } from "../linux/mod.ts";
import { FuseDevice } from "./device.ts";
import { cstr, errno, libc } from "./libc.ts";

Deno.test("device: a read failing with an odd errno is retried and said before the device ends", async () => {
  // A directory: every read() fails with EISDIR, an errno /dev/fuse never answers.
  const fd = libc().open(cstr("/"), 0, 0);
  ok(fd >= 0, `open / failed (errno ${errno()})`);
  const device = new FuseDevice(fd, { slotSize: 1 << 16, slots: 2 });
  const retried: number[] = [];
  let requests = 0;
  const ended = new Promise<number>((resolve) =>
    device.start({
      request: (buffer) => {
        requests++;
        buffer.release();
      },
      end: resolve,
      retried: (code) => retried.push(code),
    })
  );
  try {
    deepStrictEqual(await ended, ERRNO.EISDIR, "the device ends with the read's errno");
    deepStrictEqual(retried, [ERRNO.EISDIR], "the failure was said once while the reader retried");
    deepStrictEqual(requests, 0);
  } finally {
    device.close();
  }
});
