// POSIX ACLs through the mount: the kernel's permission checks honour the access ACL the
// container's filesystem stores (as on ext4 or overlayfs), an ACL set through the mount is the
// container's, and one changed from elsewhere stops granting at once (the change feed drops what
// the kernel cached with the attributes). `-o noacl` goes back to the mode bits alone.

import { deepStrictEqual, equal } from "node:assert/strict";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { py } from "../fuse/helpers.ts";
import { docker, startMount } from "./harness.ts";

const ACL_XATTR = "system.posix_acl_access";
// struct posix_acl_xattr_header { u32 version = 2 }, then { u16 tag, u16 perm, u32 id } sorted
// by tag: user::rw-, user:1000:r--, group::---, mask::r--, other::---.
const ACL_HEX = "02000000" + "01000600ffffffff" + "02000400e8030000" + "04000000ffffffff" +
  "10000400ffffffff" + "20000000ffffffff";

/** Reads `path` as uid/gid 1000: its text, or the errno name. */
async function readAs1000(path: string): Promise<string> {
  const r = await py(
    `try:\n  R = open(${
      JSON.stringify(path)
    }).read()\nexcept OSError as e:\n  R = errno.errorcode[e.errno]`,
    { user: "1000:1000" },
  );
  return r as unknown as string;
}

/** /acl/f inside `container`: root's, mode 0600, in a directory everyone may enter. */
async function makeSecret(container: string): Promise<void> {
  const made = await docker([
    "exec",
    container,
    "sh",
    "-c",
    "mkdir -p /acl && echo secret > /acl/f && chmod 755 /acl && chmod 600 /acl/f",
  ]);
  equal(made.code, 0, made.stderr);
}

Deno.test("acl: an access ACL grants through the mount, and its removal elsewhere shows at once", async () => {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const name = `dockerfuse-acl-${crypto.randomUUID().slice(0, 8)}`;
  const container = await startTestContainer(bed, "glibc", { name, args: ["sleep", "infinity"] });
  const a = await startMount("glibc", { container, args: ["--allow-other"] });
  try {
    await makeSecret(container);
    const f = `${a.mountpoint}/acl/f`;
    equal(await readAs1000(f), "EACCES");

    // Set through the mount: the container's filesystem holds it (mode's group bits = the mask).
    await py(`os.setxattr(${JSON.stringify(f)}, "${ACL_XATTR}", bytes.fromhex("${ACL_HEX}"))`);
    const back = await py(`R = os.getxattr(${JSON.stringify(f)}, "${ACL_XATTR}").hex()`);
    equal(back as unknown as string, ACL_HEX);
    equal((await docker(["exec", container, "stat", "-c", "%a", "/acl/f"])).stdout.trim(), "640");
    equal(await readAs1000(f), "secret\n");

    // Removed from elsewhere (a second mount: for the first, a change inside the container).
    const b = await startMount("glibc", { container });
    try {
      await py(`os.removexattr(${JSON.stringify(`${b.mountpoint}/acl/f`)}, "${ACL_XATTR}")`);
    } finally {
      await b.cleanup();
    }
    let seen = "";
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && (seen = await readAs1000(f)) !== "EACCES") {
      await new Promise((r) => setTimeout(r, 20));
    }
    equal(seen, "EACCES", "the removed ACL still granted access");
  } finally {
    await a.cleanup();
    await removeTestContainer(bed, container);
  }
});

Deno.test("acl: -o noacl checks the mode bits alone", async () => {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const name = `dockerfuse-noacl-${crypto.randomUUID().slice(0, 8)}`;
  const container = await startTestContainer(bed, "glibc", { name, args: ["sleep", "infinity"] });
  const m = await startMount("glibc", { container, args: ["--allow-other", "-o", "noacl"] });
  try {
    await makeSecret(container);
    const f = `${m.mountpoint}/acl/f`;
    await py(`os.setxattr(${JSON.stringify(f)}, "${ACL_XATTR}", bytes.fromhex("${ACL_HEX}"))`);
    // Stored all the same, but the kernel does not consult it.
    const back = await py(`R = os.getxattr(${JSON.stringify(f)}, "${ACL_XATTR}").hex()`);
    deepStrictEqual(back as unknown as string, ACL_HEX);
    equal(await readAs1000(f), "EACCES");
  } finally {
    await m.cleanup();
    await removeTestContainer(bed, container);
  }
});
