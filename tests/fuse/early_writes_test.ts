// Writes answered ahead through a real kernel mount: the device's reader answers WRITE on
// handles the filesystem opened with `writeAhead`, and what it answers from its caches after
// such a write (stable attributes here) never predates the write.

import { deepStrictEqual, ok } from "node:assert/strict";
import { py, requireFuse, withMount } from "./helpers.ts";
import { MemFs } from "./memfs.ts";

await requireFuse();

// Stable attributes and long timeouts: GETATTR after a write is the reader's to answer once the
// session has seen the write, and must show its size then.
const memfs = () =>
  new MemFs({
    rootMode: 0o777,
    writeAhead: 64 * 1024,
    stableAttrs: true,
    entryTimeout: 3600,
    attrTimeout: 3600,
  });

Deno.test("early writes: small writes are answered by the reader; stat always shows them", () =>
  withMount(async ({ dir, fs }) => {
    const r = await py(
      `
fd = os.open("f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
wrong = []
for i in range(1, 2001):
    os.write(fd, b"0123456789" * 10)
    a = os.fstat(fd).st_size
    b = os.stat("f").st_size
    if a != 100 * i or b != 100 * i:
        wrong.append([i, a, b])
os.close(fd)
R["wrong"] = wrong[:5]
data = read_file("f")
R["size"] = len(data)
R["same"] = data == b"0123456789" * 10 * 2000
`,
      { cwd: dir },
    );
    deepStrictEqual(r, { wrong: [], size: 200_000, same: true });
    ok(fs.answeredWrites > 1000, `${fs.answeredWrites} of 2000 writes answered ahead`);
  }, { fs: memfs(), mount: { debug: false } }));
