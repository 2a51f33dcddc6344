import { deepStrictEqual, ok } from "node:assert/strict";
import { MOUNT_DEFAULTS, mountOptions } from "../mount/options.ts";
import { parseArgs, translateLegacyArgs } from "./args.ts";

Deno.test("args: mount with defaults", async () => {
  const r = await parseArgs(["mount", "web", "./web"]);
  ok(r.kind === "mount");
  deepStrictEqual(r.options.container, "web");
  deepStrictEqual(r.options.mountpoint, "./web");
  deepStrictEqual(r.options.path, MOUNT_DEFAULTS.path);
  deepStrictEqual(r.options.attrTimeout, MOUNT_DEFAULTS.attrTimeout);
  deepStrictEqual([r.options.readOnly, r.options.allowOther, r.daemon], [false, false, false]);
  deepStrictEqual(r.options, mountOptions("web", "./web"));
  deepStrictEqual([r.daemon, r.logFormat], [false, "text"]);
});

Deno.test("args: every mount default comes from MOUNT_DEFAULTS", async () => {
  const r = await parseArgs(["mount", "web", "/mnt"]);
  ok(r.kind === "mount");
  const { container, mountpoint, ...rest } = r.options;
  deepStrictEqual([container, mountpoint], ["web", "/mnt"]);
  deepStrictEqual(rest, { ...MOUNT_DEFAULTS });
});

Deno.test("args: flags override the defaults, the rest stays", async () => {
  const r = await parseArgs([
    "mount",
    "--read-only",
    "--attr-timeout",
    "3",
    "--entry-timeout",
    "4",
    "-d",
    "--log-format",
    "json",
    "web",
    "/mnt",
  ]);
  ok(r.kind === "mount");
  deepStrictEqual(
    r.options,
    mountOptions("web", "/mnt", {
      readOnly: true,
      attrTimeout: 3,
      entryTimeout: 4,
      negativeTimeout: 4, // follows --entry-timeout
      liveTimeout: 0, // given explicitly, they apply where the change feed vouches too
    }),
  );
  deepStrictEqual([r.daemon, r.logFormat], [true, "json"]);
});

Deno.test("args: --no-watch and -o no_watch turn the change feed off; max_watches caps it", async () => {
  const flag = await parseArgs(["mount", "--no-watch", "web", "/mnt"]);
  ok(flag.kind === "mount");
  deepStrictEqual([flag.options.watch, flag.options.liveTimeout], [false, 60]);
  const list = await parseArgs(["mount", "-o", "no_watch,max_watches=7", "web", "/mnt"]);
  ok(list.kind === "mount");
  deepStrictEqual([list.options.watch, list.options.maxWatches], [false, 7]);
  const timeout = await parseArgs(["mount", "-o", "attr_timeout=2", "web", "/mnt"]);
  ok(timeout.kind === "mount");
  deepStrictEqual([timeout.options.watch, timeout.options.liveTimeout], [true, 0]);
  const bad = await parseArgs(["mount", "-o", "max_watches=x", "web", "/mnt"]);
  ok(bad.kind === "usage-error");
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
  ok(r.kind === "mount");
  const o = r.options;
  deepStrictEqual(
    [o.readOnly, o.allowOther, o.path, o.attrTimeout, o.requestTimeout, o.user, o.writebackCache],
    [true, true, "/srv", 2.5, 0, "1000:1000", true],
  );
  deepStrictEqual(o.syncWrites, true);
  const plain = await parseArgs(["mount", "web", "/mnt"]);
  ok(plain.kind === "mount" && plain.options.syncWrites === false);
  const flag = await parseArgs(["mount", "--sync-writes", "web", "/mnt"]);
  ok(flag.kind === "mount" && flag.options.syncWrites === true);
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
    ok(r.kind === "usage-error", `${argv.join(" ")} gave ${r.kind}`);
    ok(pattern.test(r.text), `${argv.join(" ")}: ${r.text}`);
  }
});

Deno.test("args: the original tool's flags translate to the subcommand form", () => {
  deepStrictEqual(
    translateLegacyArgs(["-id", "web", "-mount", "./w", "-d", "-debug", "-json", "-p", "/x"]),
    ["mount", "--daemon", "--debug", "--log-format", "json", "--path", "/x", "web", "./w"],
  );
  deepStrictEqual(translateLegacyArgs(["-i=web", "--m", "./w"]), ["mount", "web", "./w"]);
  deepStrictEqual(translateLegacyArgs(["-version"]), ["version"]);
  deepStrictEqual(translateLegacyArgs(["-v"]), ["version"]);
  deepStrictEqual(translateLegacyArgs(["mount", "web", "./w"]), undefined);
  deepStrictEqual(translateLegacyArgs(["-id", "web"]), undefined); // no mountpoint: not this style
});

Deno.test("args: help and version", async () => {
  const help = await parseArgs(["--help"]);
  ok(help.kind === "help" && help.text.includes("mount"));
  deepStrictEqual(await parseArgs(["version", "--json"]), { kind: "version", json: true });
  deepStrictEqual(await parseArgs(["umount", "/mnt"]), { kind: "unmount", mountpoint: "/mnt" });
});

Deno.test("args: reconnect is the default; --no-reconnect, --follow, --reconnect-grace and -o", async () => {
  const plain = await parseArgs(["mount", "web", "/mnt"]);
  ok(plain.kind === "mount");
  deepStrictEqual(
    [plain.options.reconnect, plain.options.follow, plain.options.reconnectGrace],
    [true, false, MOUNT_DEFAULTS.reconnectGrace],
  );
  const flags = await parseArgs([
    "mount",
    "--no-reconnect",
    "--follow",
    "--reconnect-grace",
    "2",
    "web",
    "/mnt",
  ]);
  ok(flags.kind === "mount");
  deepStrictEqual(
    [flags.options.reconnect, flags.options.follow, flags.options.reconnectGrace],
    [false, true, 2],
  );
  const o = await parseArgs(["mount", "-o", "noreconnect,follow,reconnect_grace=3", "web", "/m"]);
  ok(o.kind === "mount");
  deepStrictEqual([o.options.reconnect, o.options.follow, o.options.reconnectGrace], [
    false,
    true,
    3,
  ]);
});

// On by default, off with their -o word: ACLs consulted, the direct channel used.
for (const [field, word] of [["acl", "noacl"], ["direct", "no_direct"]] as const) {
  Deno.test(`args: ${field} is on unless -o ${word}`, async () => {
    const plain = await parseArgs(["mount", "web", "/mnt"]);
    ok(plain.kind === "mount");
    deepStrictEqual(plain.options[field], true);
    const off = await parseArgs(["mount", "-o", word, "web", "/mnt"]);
    ok(off.kind === "mount");
    deepStrictEqual(off.options[field], false);
  });
}

Deno.test("args: io_uring rings only when asked (--io-uring, -o io_uring)", async () => {
  const plain = await parseArgs(["mount", "web", "/mnt"]);
  ok(plain.kind === "mount");
  deepStrictEqual(plain.options.ioUring, false);
  for (const args of [["--io-uring"], ["-o", "io_uring"]]) {
    const on = await parseArgs(["mount", ...args, "web", "/mnt"]);
    ok(on.kind === "mount");
    deepStrictEqual(on.options.ioUring, true, args.join(" "));
  }
});
