// Paths never escape the root; errors as a non-root satellite (user nobody).

import { equal, ok } from "node:assert/strict";
import { OpenFlags } from "../../src/protocol/mod.ts";
import { errnoOf, startSatellite, valueOf } from "./harness.ts";

const NOBODY = { uid: 65534, gid: 65534 };

async function makeRoot(): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "dfsat-sec-" });
  Deno.mkdirSync(`${root}/dir`);
  Deno.writeTextFileSync(`${root}/dir/file`, "inside");
  Deno.symlinkSync("/", `${root}/escape`); // absolute symlink out of the root
  Deno.symlinkSync("../..", `${root}/dir/up`); // relative symlink out of the root
  return root;
}

for (const walk of [false, true]) {
  Deno.test(`paths cannot escape the root (${walk ? "per-component walk" : "openat2"})`, async () => {
    const root = await makeRoot();
    const h = startSatellite(root, { args: walk ? ["--walk-paths"] : [] });
    const c = h.client.call;
    try {
      await h.client.ready;
      for (
        const bad of [
          "..",
          "dir/..",
          "../etc/passwd",
          "/etc/passwd",
          "dir//file",
          "./dir",
          "dir/",
          "dir/./file",
          "dir\0file",
          new Uint8Array([0x64, 0, 0x66]),
          new Uint8Array([0x2e, 0x2e]),
        ]
      ) {
        equal(
          errnoOf(await c.lstat({ path: bad })),
          "EINVAL",
          `lstat ${JSON.stringify(String(bad))}`,
        );
        equal(errnoOf(await c.open({ path: bad, flags: 0 })), "EINVAL");
      }
      // symlinks in intermediate components are refused, whatever they point to
      for (const path of ["escape/etc/passwd", "dir/up/etc/passwd", "escape/tmp"]) {
        const r = await c.lstat({ path });
        ok(["ELOOP", "ENOTDIR"].includes(errnoOf(r)), `${path}: ${errnoOf(r)}`);
        equal(errnoOf(await c.mkdir({ path: `${path}x`, mode: 0o755 })), errnoOf(r));
      }
      // a final symlink is never followed
      equal(valueOf(await c.lstat({ path: "escape" })).mode & 0o170000, 0o120000);
      equal(errnoOf(await c.open({ path: "escape", flags: 0 })), "ELOOP");
      ok(["ELOOP", "ENOTDIR"].includes(errnoOf(await c.opendir({ path: "escape" }))));
      equal(errnoOf(await c.truncate({ path: "escape", size: 0n })), "ELOOP");
      equal(errnoOf(await c.chmod({ path: "escape", mode: 0o777 })), "EOPNOTSUPP");
      // the legitimate paths still work
      equal(valueOf(await c.lstat({ path: "dir/file" })).size, 6n);
      equal(valueOf(await c.readlink({ path: "dir/up" })), "../..");
    } finally {
      await h.stop();
      await Deno.remove(root, { recursive: true });
    }
  });
}

Deno.test("a satellite running as nobody gets EACCES/EPERM from the kernel", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfsat-nobody-" });
  const denoDir = await Deno.makeTempDir({ prefix: "dfsat-denodir-" });
  Deno.chmodSync(root, 0o755);
  Deno.chmodSync(denoDir, 0o777);
  Deno.mkdirSync(`${root}/private`, { mode: 0o700 });
  Deno.chmodSync(`${root}/private`, 0o700);
  Deno.writeTextFileSync(`${root}/private/secret`, "s");
  Deno.writeTextFileSync(`${root}/rootonly`, "r");
  Deno.chmodSync(`${root}/rootonly`, 0o600);
  Deno.mkdirSync(`${root}/open`, { mode: 0o777 });
  Deno.chmodSync(`${root}/open`, 0o777);
  const h = startSatellite(root, { user: NOBODY, denoDir });
  const c = h.client.call;
  try {
    const hello = await h.client.ready;
    equal(hello.uid, NOBODY.uid);
    equal(errnoOf(await c.lstat({ path: "private/secret" })), "EACCES");
    equal(errnoOf(await c.opendir({ path: "private" })), "EACCES");
    equal(errnoOf(await c.open({ path: "rootonly", flags: 0 })), "EACCES");
    equal(errnoOf(await c.mkdir({ path: "newdir", mode: 0o755 })), "EACCES");
    equal(errnoOf(await c.unlink({ path: "rootonly" })), "EACCES");
    equal(errnoOf(await c.chown({ path: "rootonly", uid: 65534 })), "EPERM");
    equal(errnoOf(await c.chmod({ path: "rootonly", mode: 0o777 })), "EPERM");
    equal(
      errnoOf(await c.mknod({ path: "open/dev", mode: 0o20600, rdevMajor: 1, rdevMinor: 3 })),
      "EPERM",
    );
    // the owner argument is ignored when the satellite is not root
    const made = valueOf(
      await c.create({
        path: "open/mine",
        flags: OpenFlags.O_RDWR,
        mode: 0o644,
        owner: { uid: 0, gid: 0 },
      }),
    );
    equal(made.stat.uid, NOBODY.uid);
    valueOf(await c.release({ handle: made.handle }));
  } finally {
    await h.stop();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(denoDir, { recursive: true });
  }
});

Deno.test("--self removes only the directory holding the running satellite", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfsat-self-root-" });
  const upload = await Deno.makeTempDir({ prefix: "dfsat-self-upload-" });
  const bystander = await Deno.makeTempDir({ prefix: "dfsat-self-other-" });
  try {
    const main = new URL("../../satellite/main.ts", import.meta.url).pathname;
    const bundled = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", "--quiet", "-o", `${upload}/satellite.js`, main],
      stdout: "null",
      stderr: "piped",
    }).output();
    equal(bundled.success, true, new TextDecoder().decode(bundled.stderr));
    const run = async (script: string, self: string) =>
      await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-lock", "--no-config", script, "--root", root, "--self", self],
        stdin: "null", // EOF at once: the satellite exits after its startup
        stdout: "null",
        stderr: "piped",
      }).output();
    // a directory that does not hold the script is left alone
    const refused = await run(`${upload}/satellite.js`, bystander);
    equal(refused.code, 0);
    ok(new TextDecoder().decode(refused.stderr).includes("not removing"));
    await Deno.stat(bystander);
    // its own upload directory is removed
    const removed = await run(`${upload}/satellite.js`, `${upload}/`);
    equal(removed.code, 0, new TextDecoder().decode(removed.stderr));
    await Deno.stat(upload).then(
      () => ok(false, "the upload dir must be gone"),
      (e) => ok(e instanceof Deno.errors.NotFound),
    );
  } finally {
    for (const d of [root, upload, bystander]) {
      await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  }
});
