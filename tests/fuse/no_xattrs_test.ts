// The no-xattrs shortcut through a real kernel mount: GETXATTR on an inode the filesystem
// reported without xattrs is answered by the device's reader and never reaches the filesystem.

import { deepStrictEqual, ok } from "node:assert/strict";
import { py, requireFuse, withMount } from "./helpers.ts";
import { MemFs } from "./memfs.ts";

await requireFuse();

// Long timeouts: the shortcut lasts as long as the attributes it came with.
const memfs = () =>
  new MemFs({ rootMode: 0o777, reportNoXattrs: true, entryTimeout: 3600, attrTimeout: 3600 });

Deno.test("no-xattrs: getxattr of a file without xattrs is answered without the filesystem", () =>
  withMount(async ({ dir, fs }) => {
    const r = await py(
      `
write_file("f", b"x")
R["size"] = os.stat("f").st_size
R["user"] = E(os.getxattr, "f", "user.k")
R["cap"] = E(os.getxattr, "f", "security.capability")
`,
      { cwd: dir },
    );
    deepStrictEqual(r, { size: 1, user: "ENODATA", cap: "ENODATA" });
    deepStrictEqual(fs.getxattrCalls, 0, "every GETXATTR was answered by the reader");
    const after = await py(
      `
os.setxattr("f", "user.k", b"v")
R["user"] = os.getxattr("f", "user.k").decode()
R["other"] = E(os.getxattr, "f", "user.other")
`,
      { cwd: dir },
    );
    deepStrictEqual(after, { user: "v", other: "ENODATA" });
    ok(fs.getxattrCalls >= 2, `the filesystem answers once there are xattrs`);
  }, { fs: memfs(), mount: { debug: false } }));
