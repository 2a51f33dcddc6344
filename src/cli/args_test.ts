import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { MOUNT_DEFAULTS, parseArgs, translateLegacyArgs } from "./args.ts";

Deno.test("args: mount with defaults", async () => {
  const r = await parseArgs(["mount", "web", "./web"]);
  assert(r.kind === "mount");
  assertEquals(r.options.container, "web");
  assertEquals(r.options.mountpoint, "./web");
  assertEquals(r.options.path, MOUNT_DEFAULTS.path);
  assertEquals(r.options.attrTimeout, MOUNT_DEFAULTS.attrTimeout);
  assertEquals([r.options.readOnly, r.options.allowOther, r.options.daemon], [false, false, false]);
});

Deno.test("args: -o lists set the same options as the flags", async () => {
  const r = await parseArgs([
    "mount",
    "-o",
    "ro,allow_other,path=/srv,attr_timeout=2.5,request_timeout=0,user=1000:1000",
    "-o",
    "writeback_cache,sync_writes",
    "web",
    "/mnt",
  ]);
  assert(r.kind === "mount");
  const o = r.options;
  assertEquals(
    [o.readOnly, o.allowOther, o.path, o.attrTimeout, o.requestTimeout, o.user, o.writebackCache],
    [true, true, "/srv", 2.5, 0, "1000:1000", true],
  );
  assertEquals(o.syncWrites, true);
  const plain = await parseArgs(["mount", "web", "/mnt"]);
  assert(plain.kind === "mount" && plain.options.syncWrites === false);
  const flag = await parseArgs(["mount", "--sync-writes", "web", "/mnt"]);
  assert(flag.kind === "mount" && flag.options.syncWrites === true);
});

Deno.test("args: bad -o values and flags are usage errors naming the problem", async () => {
  const cases: [string[], RegExp][] = [
    [["mount", "-o", "bogus", "c", "m"], /unknown mount option 'bogus'.*ro, rw/],
    [["mount", "-o", "ro=1", "c", "m"], /ro takes no value/],
    [["mount", "-o", "attr_timeout=-1", "c", "m"], /seconds between 0 and 86400/],
    [["mount", "-o", "path=relative", "c", "m"], /must be absolute/],
    [["mount", "-o", "user=", "c", "m"], /user needs a value/],
    [["mount", "--path", "relative", "c", "m"], /absolute path/],
    [["mount", "c"], /mountpoint/],
  ];
  for (const [argv, pattern] of cases) {
    const r = await parseArgs(argv);
    assert(r.kind === "usage-error", `${argv.join(" ")} gave ${r.kind}`);
    assert(pattern.test(r.text), `${argv.join(" ")}: ${r.text}`);
  }
});

Deno.test("args: the original tool's flags translate to the subcommand form", () => {
  assertEquals(
    translateLegacyArgs(["-id", "web", "-mount", "./w", "-d", "-debug", "-json", "-p", "/x"]),
    ["mount", "--daemon", "--debug", "--log-format", "json", "--path", "/x", "web", "./w"],
  );
  assertEquals(translateLegacyArgs(["-i=web", "--m", "./w"]), ["mount", "web", "./w"]);
  assertEquals(translateLegacyArgs(["-version"]), ["version"]);
  assertEquals(translateLegacyArgs(["-v"]), ["version"]);
  assertEquals(translateLegacyArgs(["mount", "web", "./w"]), undefined);
  assertEquals(translateLegacyArgs(["-id", "web"]), undefined); // no mountpoint: not this style
});

Deno.test("args: help and version", async () => {
  const help = await parseArgs(["--help"]);
  assert(help.kind === "help" && help.text.includes("mount"));
  assertEquals(await parseArgs(["version", "--json"]), { kind: "version", json: true });
  assertEquals(await parseArgs(["umount", "/mnt"]), { kind: "unmount", mountpoint: "/mnt" });
});
