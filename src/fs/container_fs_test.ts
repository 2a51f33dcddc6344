// ContainerFs against a fake satellite RPC: the FUSE → RPC mapping and its hardening (issue 15).

import { deepStrictEqual, equal, ok as assert } from "node:assert/strict";
import type { Entry, Errno, Node, Opened } from "../fuse/mod.ts";
import {
  abi,
  Absent,
  EACCES,
  EINTR,
  ENODATA,
  ENOENT,
  ENOSPC,
  ESTALE,
  isErrno,
} from "../fuse/mod.ts";
import {
  DT_DIR,
  DT_LNK,
  DT_REG,
  O_DIRECT,
  O_DSYNC,
  O_RDONLY,
  O_RDWR,
  O_TRUNC,
  O_WRONLY,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  S_ISGID,
  S_ISUID,
} from "../linux/mod.ts";
import {
  ChangeKind,
  type DirEntry as WireDirEntry,
  OpenFlags,
  type ResultOf,
  type RpcResult,
  type Stat,
  type WalkEntry,
} from "../protocol/mod.ts";
import { ContainerFs, type ContainerFsOptions, type Handle } from "./container_fs.ts";
import type { KernelCaches } from "./live.ts";
import {
  deferred,
  fail,
  fakeContext,
  type FakeHandler,
  fakeLogger,
  fakeNode,
  FakeRpc,
  fakeStat,
  keyOf,
  ok,
} from "./_fake_rpc.ts";

function setup(
  options: Partial<ContainerFsOptions> = {},
): { rpc: FakeRpc; fs: ContainerFs; root: Node; logger: ReturnType<typeof fakeLogger> } {
  const rpc = new FakeRpc();
  const logger = fakeLogger();
  const fs = new ContainerFs(rpc.call, {
    attrTimeout: 1,
    entryTimeout: 1,
    hostArch: "x86_64",
    logger,
    ...options,
  });
  return { rpc, fs, root: fakeNode(""), logger };
}

function value<T>(result: T | Errno): T {
  if (isErrno(result)) throw new Error(`unexpected ${result.name}`);
  return result;
}

/** The node the FUSE layer would make for `entry` found at (parent, name), told to `fs`. */
function nodeFor(fs: ContainerFs, entry: Entry, parent: Node, name: string): Node {
  const node = fakeNode(entry.key!, parent, name);
  fs.entered(node, entry);
  return node;
}

const writeInfo = { flags: O_RDWR, writeFlags: 0, lockOwner: 0n };

Deno.test("container fs: a file of size 0 found by LOOKUP is opened with direct I/O", async () => {
  const { rpc, fs, root } = setup();
  const status = fakeStat({ ino: 7n, size: 0n, devMajor: 0, devMinor: 20 });
  rpc.on("lstat", () => ok(status));
  rpc.on("open", () => ok({ handle: 1 }));
  const entry = value(await fs.lookup(fakeContext(), root, "status"));
  const opened = value(await fs.open(fakeContext(), nodeFor(fs, entry, root, "status"), O_RDONLY));
  deepStrictEqual([opened.directIo, opened.keepCache], [true, false]);
});

Deno.test("container fs: a file of size 0 listed by READDIRPLUS is opened with direct I/O", async () => {
  const { rpc, fs, root } = setup();
  const status = fakeStat({ ino: 7n, size: 0n });
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [{ name: "status", ino: 7n, type: DT_REG, offset: 1n, stat: status }],
    }));
  rpc.on("open", () => ok({ handle: 1 }));
  const dir = value(await fs.opendir(fakeContext(), root));
  const listed = value(await fs.readdir(fakeContext(), root, dir.handle, 0, true));
  deepStrictEqual(listed.map((e) => e.name), ["status"]);
  const node = nodeFor(fs, listed[0].entry!, root, "status");
  const opened = value(await fs.open(fakeContext(), node, O_RDONLY));
  deepStrictEqual(opened.directIo, true);
});

Deno.test("container fs: a regular file with a size keeps the page cache", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("lstat", () => ok(fakeStat({ size: 5n })));
  rpc.on("open", () => ok({ handle: 1 }));
  const entry = value(await fs.lookup(fakeContext(), root, "f"));
  const opened = value(await fs.open(fakeContext(), nodeFor(fs, entry, root, "f"), O_RDONLY));
  deepStrictEqual([opened.directIo, opened.keepCache], [false, true]);
});

Deno.test("container fs: a name listed with attributes answers one LOOKUP without a round trip", async () => {
  const { rpc, fs, root } = setup();
  const stat = fakeStat({ ino: 7n });
  rpc.on(
    "opendir",
    () =>
      ok({
        handle: 3,
        eof: true,
        entries: [{ name: "f", ino: 7n, type: DT_REG, offset: 1n, stat }],
      }),
  );
  rpc.on("lstat", () => ok(stat));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  value(await fs.readdir(fakeContext(), root, handle, 0, true));
  const before = rpc.calls.length;
  deepStrictEqual(value(await fs.lookup(fakeContext(), root, "f")).key, keyOf(stat));
  deepStrictEqual(rpc.calls.length, before, "answered from the listing");
  value(await fs.lookup(fakeContext(), root, "f"));
  deepStrictEqual(rpc.methods().slice(before), ["lookup"], "used once");
});

Deno.test("container fs: a listing read before an event handled first answers no later LOOKUP", async () => {
  const { rpc, fs, root } = setup({ live: { timeout: 60, maxWatches: 100 } });
  const rootKey = "0:1:1";
  fs.onChanges([{ dir: rootKey, what: ChangeKind.WATCHED, name: "" }]);
  const stat = fakeStat({ ino: 7n });
  rpc.on("opendir", () => ok({ handle: 3 }));
  rpc.on("readdir", () => {
    // The removal's event frame came right behind this answer: handled before it resolves.
    fs.onChanges([{ dir: rootKey, name: "f", what: ChangeKind.NAME }]);
    return ok({ eof: true, entries: [{ name: "f", ino: 7n, type: DT_REG, offset: 1n, stat }] });
  });
  rpc.on("lstat", () => fail("ENOENT"));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  value(await fs.readdir(fakeContext(), root, handle, 0, true));
  // (Asked after the event, in the watched root: absent for the long timeout.)
  deepStrictEqual(((await fs.lookup(fakeContext(), root, "f")) as Errno).code, ENOENT.code);
  deepStrictEqual(rpc.methods().filter((m) => m === "lookup").length, 1, "asked, not listed");
  deepStrictEqual(((await fs.lookup(fakeContext(), root, "g")) as Errno).code, ENOENT.code);
  deepStrictEqual(rpc.methods().filter((m) => m === "lookup").length, 2, "no absent names");
});

Deno.test("container fs: entries an OPENDIR brought are read again at READDIR after an event in the directory", async () => {
  const { rpc, fs, root } = setup({ live: { timeout: 60, maxWatches: 100 } });
  const rootKey = "0:1:1";
  const stat = fakeStat({ ino: 7n, devMajor: 0, devMinor: 1 });
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [{ name: "f", ino: 7n, type: DT_REG, offset: 1n, stat }],
    }));
  rpc.on("readdir", () => ok({ entries: [], eof: true }));
  // Not yet watched: OPENDIR brings the listing (a watched one would leave it to READDIR).
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  fs.onChanges([{ dir: rootKey, what: ChangeKind.WATCHED, name: "" }]);
  // `f` is removed in the container between OPENDIR and the READDIRPLUS: shown, the kernel would
  // make its dentry (and keep its cached listing) after the event's notices dropped them.
  fs.onChanges([{ dir: rootKey, name: "f", what: ChangeKind.NAME }]);
  deepStrictEqual(value(await fs.readdir(fakeContext(), root, handle, 0, true)), []);
  deepStrictEqual(rpc.methods(), ["opendir", "readdir"]);
  deepStrictEqual(rpc.calls[1].params, { handle: 3, offset: 0n, plus: true, maxEntries: 1024 });
});

Deno.test("container fs: further entries of a stream begun before an event are shown by name only", async () => {
  const { rpc, fs, root } = setup({ live: { timeout: 60, maxWatches: 100 } });
  const rootKey = "0:1:1";
  fs.onChanges([{ dir: rootKey, what: ChangeKind.WATCHED, name: "" }]);
  const stat = (ino: bigint): Stat => fakeStat({ ino, devMajor: 0, devMinor: 1 });
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [
        { name: "f", ino: 7n, type: DT_REG, offset: 1n, stat: stat(7n) },
        { name: "g", ino: 8n, type: DT_REG, offset: 2n, stat: stat(8n) },
      ],
    }));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  const first = value(await fs.readdir(fakeContext(), root, handle, 0, true));
  deepStrictEqual(first.map((e) => e.entry!.entryTimeout), [60, 60]);
  fs.onChanges([{ dir: rootKey, name: "g", what: ChangeKind.NAME }]);
  // The kernel's buffer took only `f`: it asks for the rest, which was read before the event.
  const rest = value(await fs.readdir(fakeContext(), root, handle, 1, true));
  deepStrictEqual(rest.map((e) => e.name), ["g"]);
  // Its inode may be gone and its number another object's: no attributes, no node (the kernel
  // looks the name up).
  deepStrictEqual(rest[0].entry, undefined);
  deepStrictEqual(rpc.methods(), ["opendir"]);
});

Deno.test("container fs: READDIRPLUS shows no entry of a batch asked before a change through the mount", async () => {
  const { rpc, fs, root } = setup();
  const stat = (ino: bigint): Stat => fakeStat({ ino, devMajor: 0, devMinor: 1 });
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [
        { name: "d", ino: 7n, type: DT_DIR, offset: 1n, stat: stat(7n) },
        { name: "e", ino: 8n, type: DT_DIR, offset: 2n, stat: stat(8n) },
      ],
    }));
  rpc.on("rmdir", () => ok(undefined));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  const first = value(await fs.readdir(fakeContext(), root, handle, 0, true));
  assert(first[0].entry !== undefined, "fresh: shown with attributes");
  // `e` goes (its inode number free for the next mkdir anywhere) while the stream is read.
  await fs.rmdir(fakeContext(), root, "e");
  const rest = value(await fs.readdir(fakeContext(), root, handle, 1, true));
  deepStrictEqual(rest.map((e) => [e.name, e.entry]), [["e", undefined]]);
});

Deno.test("container fs: entries an OPENDIR brought keep the long timeout while nothing changed", async () => {
  const { rpc, fs, root } = setup({ live: { timeout: 60, maxWatches: 100 } });
  const rootKey = "0:1:1";
  fs.onChanges([{ dir: rootKey, what: ChangeKind.WATCHED, name: "" }]);
  const stat = fakeStat({ ino: 7n, devMajor: 0, devMinor: 1 });
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [{ name: "f", ino: 7n, type: DT_REG, offset: 1n, stat }],
    }));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  fs.onChanges([{ dir: "0:1:99", name: "x", what: ChangeKind.NAME }]); // another directory
  const listed = value(await fs.readdir(fakeContext(), root, handle, 0, true));
  deepStrictEqual(listed[0].entry!.entryTimeout, 60);
});

Deno.test("container fs: what is made in a watched directory gets the long timeouts, as if found there", async () => {
  // A created file with the short timeouts was looked up again by the unlink that followed a
  // second later: one round trip per file of `rm` after a build.
  const { rpc, fs, root } = setup({ live: { timeout: 60, maxWatches: 100 } });
  const rootKey = "0:1:1";
  fs.onChanges([{ dir: rootKey, what: ChangeKind.WATCHED, name: "" }]);
  rpc.on("lstat", () => ok(fakeStat({ ino: 1n, mode: S_IFDIR | 0o755, devMajor: 0, devMinor: 1 })));
  rpc.on("create", () => ok({ handle: 4, stat: fakeStat({ ino: 10n, devMajor: 0, devMinor: 1 }) }));
  rpc.on(
    "mkdir",
    () => ok({ stat: fakeStat({ ino: 11n, mode: S_IFDIR | 0o755, devMajor: 0, devMinor: 1 }) }),
  );
  const created = value(await fs.create(fakeContext(), root, "n", S_IFREG | 0o644, O_WRONLY));
  deepStrictEqual([created.entry.entryTimeout, created.entry.attrTimeout], [60, 60]);
  const made = value(await fs.mkdir(fakeContext(), root, "d", 0o755));
  deepStrictEqual(made.entryTimeout, 60, "the name; the new directory is not watched yet");
  // An event in the directory while a create is under way: that answer may be older than it.
  rpc.on("create", () => {
    fs.onChanges([{ dir: rootKey, name: "x", what: ChangeKind.NAME }]);
    return ok({ handle: 5, stat: fakeStat({ ino: 12n, devMajor: 0, devMinor: 1 }) });
  });
  const late = value(await fs.create(fakeContext(), root, "m", S_IFREG | 0o644, O_WRONLY));
  deepStrictEqual([late.entry.entryTimeout, late.entry.attrTimeout], [0, 0]);
});

Deno.test("container fs: a name the satellite finds absent in a watched directory is kept absent for the long timeout", async () => {
  const { rpc, fs, root } = setup({ live: { timeout: 60, maxWatches: 100 } });
  rpc.on("lookup", () => fail("ENOENT"));
  rpc.on("opendir", () => fail("EACCES")); // (no listing for the misses: the lookups are tested)
  // Not watched: the mount's negative timeout (the ENOENT singleton).
  equal(await fs.lookup(fakeContext(), root, "a"), ENOENT);
  const rootKey = "0:1:1";
  fs.onChanges([{ dir: rootKey, what: ChangeKind.WATCHED, name: "" }]);
  const absent = await fs.lookup(fakeContext(), root, "b");
  assert(absent instanceof Absent && absent.timeout === 60, String(absent));
  deepStrictEqual((absent as Errno).code, ENOENT.code);
  // An event in the directory while the satellite is asked: that answer may predate it.
  rpc.on("lookup", () => {
    fs.onChanges([{ dir: rootKey, name: "x", what: ChangeKind.NAME }]);
    return fail("ENOENT");
  });
  equal(await fs.lookup(fakeContext(), root, "c"), ENOENT);
  // Other failures are passed on as they are.
  rpc.on("lookup", () => fail("EACCES"));
  equal(await fs.lookup(fakeContext(), root, "d"), EACCES);
});

/** A root listed whole in one batch (names `f` and `g`), read through READDIRPLUS. */
async function listRoot(
  options: Partial<ContainerFsOptions> & { eof?: boolean } = {},
): Promise<{ rpc: FakeRpc; fs: ContainerFs; root: Node }> {
  const { rpc, fs, root } = setup(options);
  const eof = options.eof ?? true;
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof,
      entries: [
        { name: "f", ino: 7n, type: DT_REG, offset: 1n, stat: fakeStat({ ino: 7n }) },
        { name: "g", ino: 8n, type: DT_REG, offset: 2n, stat: fakeStat({ ino: 8n }) },
      ],
    }));
  rpc.on("readdir", () => ok({ entries: [], eof: false }));
  rpc.on("lstat", () => fail("ENOENT"));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  value(await fs.readdir(fakeContext(), root, handle, 0, true));
  return { rpc, fs, root };
}

Deno.test("container fs: a name absent from a complete fresh listing is ENOENT without a round trip", async () => {
  const { rpc, fs, root } = await listRoot();
  deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
  deepStrictEqual(await fs.lookup(fakeContext(), root, ".git"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").length, 0, "answered from the listing");
  // A listed name is asked again once its listed attributes were used.
  value(await fs.lookup(fakeContext(), root, "f"));
  deepStrictEqual(await fs.lookup(fakeContext(), root, "f"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => p.path), ["f"]);
});

Deno.test("container fs: a create, rename or unlink in a listed directory makes LOOKUPs of its names ask again", async () => {
  // The names a change through the mount touched are no longer known absent (whatever it did);
  // every other name of the complete listing still is.
  const changes: [string, (fs: ContainerFs, root: Node) => Promise<unknown>, string[]][] = [
    ["create", (fs, root) => fs.create(fakeContext(), root, "n", S_IFREG | 0o644, O_WRONLY), [
      "n",
    ]],
    ["rename", (fs, root) => fs.rename(fakeContext(), root, "f", root, "h", 0), ["f", "h"]],
    ["unlink", (fs, root) => fs.unlink(fakeContext(), root, "g"), ["g"]],
  ];
  for (const [name, change, touched] of changes) {
    const { rpc, fs, root } = await listRoot();
    rpc.on("create", () => ok({ handle: 4, stat: fakeStat({ ino: 10n }) }));
    rpc.on("rename", () => ok({}));
    rpc.on("unlink", () => ok(undefined));
    await change(fs, root);
    // (A new listing, which two LOOKUP misses would make, is not what is tested here.)
    rpc.on("opendir", () => fail("EACCES"));
    deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
    const asked = (): unknown[] =>
      rpc.paramsOf("lookup").map((p) => p.path).filter((p) => p !== "");
    deepStrictEqual(asked(), [], name); // "" is the parent's mode, asked by create
    for (const t of touched) await fs.lookup(fakeContext(), root, t);
    deepStrictEqual(asked(), touched, name);
  }
});

Deno.test("container fs: a listing made while a create is under way does not answer absent names", async () => {
  const { rpc, fs, root } = setup();
  const created = deferred<ReturnType<typeof ok<{ handle: number; stat: Stat }>>>();
  rpc.on("create", () => created.promise);
  rpc.on("lstat", (p) => p.path === "" ? ok(fakeStat({ mode: S_IFDIR | 0o755 })) : fail("ENOENT"));
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [{ name: "f", ino: 7n, type: DT_REG, offset: 1n, stat: fakeStat({ ino: 7n }) }],
    }));
  const creating = fs.create(fakeContext(), root, "n", S_IFREG | 0o644, O_WRONLY);
  await new Promise((r) => setTimeout(r, 0));
  // Listed while the create is under way: "n" may or may not be in it.
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  value(await fs.readdir(fakeContext(), root, handle, 0, true));
  created.resolve(ok({ handle: 4, stat: fakeStat({ ino: 10n }) }));
  value(await creating);
  deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => p.path).filter((p) => p !== ""), ["missing"]);
  // Listed again once it was answered: trusted.
  const again = value(await fs.opendir(fakeContext(), root)).handle;
  value(await fs.readdir(fakeContext(), root, again, 0, true));
  deepStrictEqual(await fs.lookup(fakeContext(), root, "other"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => p.path).filter((p) => p !== ""), ["missing"]);
});

Deno.test("container fs: a complete listing answers absent names only within the timeouts", async () => {
  const { rpc, fs, root } = await listRoot({ attrTimeout: 0.05, entryTimeout: 1 });
  deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").length, 0);
  await new Promise((r) => setTimeout(r, 80));
  deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
  deepStrictEqual(
    rpc.paramsOf("lookup").map((p) => p.path),
    ["missing"],
    "asked after the timeout",
  );
});

Deno.test("container fs: an incomplete listing does not answer absent names", async () => {
  const { rpc, fs, root } = await listRoot({ eof: false });
  deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => p.path), ["missing"]);
});

Deno.test("container fs: a listing read in batches to its end answers absent names", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: false,
      entries: [{ name: "f", ino: 7n, type: DT_REG, offset: 1n, stat: fakeStat({ ino: 7n }) }],
    }));
  rpc.on("readdir", () =>
    ok({
      eof: true,
      entries: [{ name: "g", ino: 8n, type: DT_REG, offset: 2n, stat: fakeStat({ ino: 8n }) }],
    }));
  rpc.on("lstat", () => fail("ENOENT"));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  value(await fs.readdir(fakeContext(), root, handle, 0, true));
  deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").length, 1, "not complete after the first batch");
  value(await fs.readdir(fakeContext(), root, handle, 1, true));
  deepStrictEqual(await fs.lookup(fakeContext(), root, "missing"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").length, 1, "complete after the last batch");
});

Deno.test("container fs: GETATTR of a directory right after an unlink in it needs no round trip", async () => {
  const { rpc, fs, root } = setup();
  const dir = fakeStat({ ino: 2n, mode: S_IFDIR | 0o755, nlink: 7 });
  rpc.on("unlink", () => ok({ dir }));
  rpc.on("lstat", () => ok(fakeStat({ ino: 2n, mode: S_IFDIR | 0o755, nlink: 1 })));
  await fs.unlink(fakeContext(), root, "f");
  deepStrictEqual(value(await fs.getattr(fakeContext(), root, undefined)).attr.nlink, 7);
  deepStrictEqual(value(await fs.getattr(fakeContext(), root, undefined)).attr.nlink, 1);
  deepStrictEqual(rpc.methods(), ["unlink", "lstat"]);
});

Deno.test("container fs: GETATTR of the directories right after a mkdir, symlink, mknod, link or rename needs no round trip", async () => {
  const { rpc, fs, root } = setup();
  const dir = (nlink: number) => fakeStat({ ino: 1n, mode: S_IFDIR | 0o755, nlink });
  const sub = fakeStat({ ino: 2n, mode: S_IFDIR | 0o755 });
  rpc.on("lstat", (p) => ok(p.path === "" ? dir(1) : sub));
  const d = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "d")), root, "d");
  rpc.on("mkdir", () => ok({ stat: fakeStat({ ino: 8n, mode: S_IFDIR | 0o755 }), dir: dir(3) }));
  rpc.on("symlink", () => ok({ stat: fakeStat({ ino: 9n, mode: S_IFLNK | 0o777 }), dir: dir(4) }));
  rpc.on("mknod", () => ok({ stat: fakeStat({ ino: 10n, mode: S_IFIFO | 0o644 }), dir: dir(5) }));
  rpc.on("link", () => ok({ stat: fakeStat({ ino: 10n, mode: S_IFIFO | 0o644 }), dir: dir(6) }));
  rpc.on("rename", () => ok({ fromDir: dir(7), toDir: { ...sub, nlink: 9 } }));
  const nlinkOf = async (node: Node): Promise<number> =>
    value(await fs.getattr(fakeContext(), node, undefined)).attr.nlink;
  const ctx = fakeContext();
  deepStrictEqual(await nlinkOf(root), 1); // the kernel knows the directory before a change
  value(await fs.mkdir(ctx, root, "m", 0o755));
  deepStrictEqual(await nlinkOf(root), 3);
  value(await fs.symlink(ctx, root, "s", "t"));
  deepStrictEqual(await nlinkOf(root), 4);
  const fifo = value(await fs.mknod(ctx, root, "p", S_IFIFO | 0o644, 0));
  deepStrictEqual(await nlinkOf(root), 5);
  value(await fs.link(ctx, nodeFor(fs, fifo, root, "p"), root, "p2"));
  deepStrictEqual(await nlinkOf(root), 6);
  await fs.rename(ctx, root, "p2", d, "p3", 0);
  deepStrictEqual([await nlinkOf(root), await nlinkOf(d)], [7, 9]);
  deepStrictEqual(rpc.methods(), [
    "lookup",
    "lstat",
    "mkdir",
    "symlink",
    "mknod",
    "link",
    "rename",
  ]);
});

Deno.test("container fs: xattr probes of an inode without xattrs are answered locally until one is set", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("lstat", () => ok(fakeStat({ hasXattrs: false })));
  rpc.on("setxattr", () => ok(null));
  rpc.on("getxattr", () => ok(new Uint8Array([1])));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  deepStrictEqual(await fs.getxattr(fakeContext(), node, "security.capability"), ENODATA);
  deepStrictEqual(await fs.listxattr(fakeContext(), node), []);
  deepStrictEqual(rpc.methods(), ["lookup"]);
  await fs.setxattr(fakeContext(), node, "user.k", new Uint8Array([1]), 0);
  deepStrictEqual(await fs.getxattr(fakeContext(), node, "user.k"), new Uint8Array([1]));
  deepStrictEqual(rpc.methods(), ["lookup", "setxattr", "getxattr"]);
});

/** The kernel's caches as the change feed sees them: `root` and its children by name. */
function kernelOf(root: Node, children: Record<string, Node>): KernelCaches {
  return {
    invalidateEntry: () => Promise.resolve(true),
    invalidateInode: () => Promise.resolve(true),
    storeData: () => Promise.resolve(true),
    nodeOf: (key) => (key === "" ? root : undefined),
    childOf: (parent, name) => (parent === root ? children[name] : undefined),
    knownNodes: () => [root, ...Object.values(children)],
  };
}

Deno.test('container fs: a change of contents keeps an inode\'s "no xattrs"; one of attributes drops it', async () => {
  const { rpc, fs, root } = setup({ live: { timeout: 60, maxWatches: 100 } });
  rpc.on("lstat", () => ok(fakeStat({ ino: 7n, hasXattrs: false })));
  rpc.on("getxattr", () => fail("ENODATA"));
  rpc.on("watch", () => ok({ root: "0:1:1" }));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  fs.attachKernel(kernelOf(root, { f: node }));
  fs.onChanges([{ dir: "0:1:1", what: ChangeKind.WATCHED, name: "" }]);
  const xattrCalls = (): string[] => rpc.methods().filter((m) => m.includes("xattr"));
  // Written (in the container, or through the mount and told back): a write never adds an
  // xattr, so the kernel's security.capability probe before each write stays local.
  fs.onChanges([{ dir: "0:1:1", name: "f", what: ChangeKind.DATA }]);
  deepStrictEqual(await fs.getxattr(fakeContext(), node, "security.capability"), ENODATA);
  deepStrictEqual(xattrCalls(), [], "answered without the satellite");
  // An attribute change may be a setxattr inside the container: asked again.
  fs.onChanges([{ dir: "0:1:1", name: "f", what: ChangeKind.ATTR | ChangeKind.DATA }]);
  deepStrictEqual(await fs.getxattr(fakeContext(), node, "security.capability"), ENODATA);
  deepStrictEqual(xattrCalls(), ["getxattr"]);
});

Deno.test("container fs: an open's read-ahead serves reads until the file is written", async () => {
  const { rpc, fs, root } = setup();
  const bytes = new TextEncoder().encode("hello");
  let next = 1;
  rpc.on("lstat", () => ok(fakeStat({ size: 5n })));
  rpc.on("open", (p) => ok(p.readAhead ? { handle: next++, data: bytes } : { handle: next++ }));
  rpc.on("write", (p) => ok(p.data.length));
  rpc.on("read", () => ok(new TextEncoder().encode("HELLO")));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const reader = value(await fs.open(fakeContext(), node, O_RDONLY)).handle;
  deepStrictEqual(rpc.paramsOf("open")[0].readAhead! > 0, true);
  deepStrictEqual(value(await fs.read(fakeContext(), node, reader, 0, 4096)), bytes);
  deepStrictEqual(rpc.methods(), ["lookup", "open"]);
  const writer = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  await fs.write(fakeContext(), node, writer, 0, new TextEncoder().encode("HELLO"), writeInfo);
  deepStrictEqual(
    new TextDecoder().decode(value(await fs.read(fakeContext(), node, reader, 0, 4096))),
    "HELLO",
  );
});

Deno.test("container fs: a write-behind failure is reported by the handle's next write", async () => {
  const { rpc, fs, root } = setup();
  const results = [fail("ENOSPC"), ok(10)];
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1 }));
  rpc.on("write", () => results.shift()!);
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  deepStrictEqual(await fs.write(fakeContext(), node, h, 0, new Uint8Array(10), writeInfo), 10);
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(
    await fs.write(fakeContext(), node, h, 10, new Uint8Array(10), writeInfo),
    ENOSPC,
  );
  deepStrictEqual(rpc.paramsOf("write").length, 1, "the failed handle's next write is not sent");
});

Deno.test("container fs: O_DSYNC writes and --sync-writes wait for the satellite", async () => {
  for (const [writeBehind, flags] of [[true, O_WRONLY | O_DSYNC], [false, O_WRONLY]] as const) {
    const { rpc, fs, root } = setup({ writeBehind });
    rpc.on("lstat", () => ok(fakeStat()));
    rpc.on("open", () => ok({ handle: 1 }));
    rpc.on("write", () => fail("EDQUOT"));
    const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
    const h = value(await fs.open(fakeContext(), node, flags)).handle;
    const info = { ...writeInfo, flags };
    const r = await fs.write(fakeContext(), node, h, 0, new Uint8Array(10), info);
    deepStrictEqual((r as Errno).name, "EDQUOT");
  }
});

/** The answer to an open of file "f" with `flags`, on a filesystem of `options`. */
async function openedWith(
  options: Partial<ContainerFsOptions>,
  flags: number,
): Promise<Opened<Handle>> {
  const { rpc, fs, root } = setup(options);
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1 }));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  return value(await fs.open(fakeContext(), node, flags));
}

Deno.test("container fs: writes may be answered ahead on write-behind handles only", async () => {
  for (
    const [writeBehind, flags, ahead] of [
      [true, O_WRONLY, true],
      [true, O_WRONLY | O_DSYNC, false],
      [true, O_RDONLY, false],
      [false, O_WRONLY, false],
    ] as const
  ) {
    const opened = await openedWith({ writeBehind }, flags);
    deepStrictEqual((opened.writeAhead ?? 0) > 0, ahead, `writeBehind ${writeBehind}, ${flags}`);
  }
});

Deno.test("container fs: closing a read-only open sends no FLUSH unless the writeback cache is on", async () => {
  for (
    const [writebackCache, flags, noFlush] of [
      [false, O_RDONLY, true],
      [false, O_RDWR, false],
      [false, O_WRONLY, false],
      [true, O_RDONLY, false],
    ] as const
  ) {
    const opened = await openedWith({ writebackCache }, flags);
    deepStrictEqual(opened.noFlush === true, noFlush, `writeback ${writebackCache}, ${flags}`);
  }
});

Deno.test("container fs: a new handle's flush asks nothing before a write (quietFlush), unless the writeback cache is on", async () => {
  for (const writebackCache of [false, true]) {
    const opened = await openedWith({ writebackCache }, O_WRONLY);
    deepStrictEqual(opened.quietFlush === true, !writebackCache, `writeback ${writebackCache}`);
  }
  // What the session then skips: a flush of a fresh handle asks the satellite nothing.
  const { rpc, fs, root } = setup();
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1 }));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  const before = rpc.methods().length;
  deepStrictEqual(await fs.flush(fakeContext(), node, h), undefined);
  deepStrictEqual(rpc.methods().slice(before), []);
});

Deno.test("container fs: a write answered ahead is queued at once; its failure waits for the flush", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1 }));
  rpc.on("fstat", () => ok(fakeStat({ size: 10n })));
  let answerWrite: ((r: ReturnType<typeof fail>) => void) | undefined;
  rpc.on("write", () => new Promise((resolve) => answerWrite = resolve));
  rpc.on("flush", () => ok(undefined));
  rpc.on("fsync", () => ok(null));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  const info = { ...writeInfo, answered: true };
  const written = fs.write(fakeContext(), node, h, 0, new Uint8Array(10), info);
  // Synchronously: queued before anything the kernel sent after it.
  deepStrictEqual(rpc.methods().slice(-1), ["write"]);
  deepStrictEqual(await written, 10);
  const flushed = fs.flush(fakeContext(), node, h);
  await new Promise((r) => setTimeout(r, 0));
  answerWrite!(fail("ENOSPC"));
  deepStrictEqual(await flushed, ENOSPC, "the flush reports what the kernel was not told");
  // A second answered write after a failure nobody was told of yet is not refused either.
  const again = fs.write(fakeContext(), node, h, 10, new Uint8Array(5), info);
  answerWrite!(fail("EIO"));
  deepStrictEqual(await again, 5);
  deepStrictEqual((await fs.fsync(fakeContext(), node, h, false) as Errno).name, "EIO");
});

Deno.test("container fs: where the satellite says a close is quiet, a flush waits for the writes and asks nothing", async () => {
  for (const opening of ["open", "create"] as const) {
    const { rpc, fs, root } = setup();
    rpc.on("lstat", () => ok(fakeStat()));
    rpc.on("open", () => ok({ handle: 1, quietClose: true }));
    rpc.on("create", () => ok({ handle: 1, stat: fakeStat({ ino: 9n }), quietClose: true }));
    let answerWrite: ((r: RpcResult<number>) => void) | undefined;
    rpc.on("write", () => new Promise((resolve) => answerWrite = resolve));
    rpc.on("flush", () => ok(undefined));
    const node = opening === "open"
      ? nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f")
      : root;
    const h = opening === "open"
      ? value(await fs.open(fakeContext(), node, O_WRONLY)).handle
      : value(await fs.create(fakeContext(), root, "n", S_IFREG | 0o644, O_WRONLY)).handle;
    const info = { ...writeInfo, answered: true };
    deepStrictEqual(await fs.write(fakeContext(), node, h, 0, new Uint8Array(10), info), 10);
    let flushed = false;
    const flushing = fs.flush(fakeContext(), node, h).then((r) => {
      flushed = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 0));
    deepStrictEqual(flushed, false, `${opening}: the flush waits for the write`);
    answerWrite!(ok(10));
    deepStrictEqual(await flushing, undefined);
    deepStrictEqual(rpc.paramsOf("flush").length, 0, `${opening}: no flush asked`);
    // A failed write is still reported by the close.
    const again = fs.write(fakeContext(), node, h, 10, new Uint8Array(5), info);
    answerWrite!(fail("ENOSPC"));
    deepStrictEqual(await again, 5);
    deepStrictEqual(await fs.flush(fakeContext(), node, h), ENOSPC, opening);
    deepStrictEqual(rpc.paramsOf("flush").length, 0, opening);
  }
});

Deno.test("container fs: a stat right after a quiet close waits for the attributes asked behind it", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1, quietClose: true }));
  rpc.on("write", () => ok(10));
  let answerFstat: ((r: RpcResult<Stat>) => void) | undefined;
  rpc.on("fstat", () => new Promise((resolve) => answerFstat = resolve));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  value(await fs.write(fakeContext(), node, h, 0, new Uint8Array(10), writeInfo));
  // The close does not wait for the attributes…
  deepStrictEqual(await fs.flush(fakeContext(), node, h), undefined);
  deepStrictEqual(rpc.paramsOf("fstat").length, 1, "asked behind the close");
  // …a stat right after does, and asks nothing else.
  const lstats = rpc.paramsOf("lstat").length;
  const stat = fs.getattr(fakeContext(), node, undefined);
  answerFstat!(ok(fakeStat({ size: 10n })));
  deepStrictEqual(value(await stat).attr.size, 10);
  deepStrictEqual(rpc.paramsOf("lstat").length, lstats);
  // A close without writes asks nothing.
  await fs.flush(fakeContext(), node, h);
  deepStrictEqual(rpc.paramsOf("fstat").length, 1);
});

/**
 * The root listed with one subdirectory "d", which the satellite's walks answer with `inD`; the
 * walk ahead that listing starts has been answered.
 */
async function withWalkedSubdir(
  inD: WalkEntry[],
): Promise<{ rpc: FakeRpc; fs: ContainerFs; root: Node; d: Node; sub: Stat }> {
  const { rpc, fs, root } = setup();
  const sub = fakeStat({ ino: 5n, mode: S_IFDIR | 0o755 });
  let next = 10;
  rpc.on("opendir", () =>
    ok({
      handle: next++,
      eof: true,
      entries: [{ name: "d", ino: 5n, type: DT_DIR, offset: 1n, stat: sub }],
    }));
  rpc.on(
    "walk",
    (p) =>
      ok({
        dirs: p.paths.map((path) => ({ path, self: sub, entries: inD })),
        walked: p.paths.length,
      }),
  );
  rpc.on("release", () => ok(null));
  const rootDir = value(await fs.opendir(fakeContext(), root)).handle;
  const d = nodeFor(
    fs,
    value(await fs.readdir(fakeContext(), root, rootDir, 0, true))[0].entry!,
    root,
    "d",
  );
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.paramsOf("walk").map((p) => p.paths), [["d"]], "d walked ahead");
  return { rpc, fs, root, d, sub };
}

Deno.test("container fs: a subdirectory walked ahead opens without a round trip, its symlinks read without one; a change drops them", async () => {
  const inSub = { name: "x", ino: 6n, type: DT_REG, offset: 1n, stat: fakeStat({ ino: 6n }) };
  const linkStat = fakeStat({ ino: 7n, mode: S_IFLNK | 0o777 });
  const link = { name: "l", ino: 7n, type: DT_LNK, offset: 2n, stat: linkStat, target: "../t" };
  const { rpc, fs, root, d } = await withWalkedSubdir([inSub, link]);
  rpc.on("readlink", () => ok("../t"));
  rpc.on("mkdir", () => ok({ stat: fakeStat({ ino: 8n, mode: S_IFDIR | 0o755 }) }));
  const opened = value(await fs.opendir(fakeContext(), d)).handle;
  const listed = value(await fs.readdir(fakeContext(), d, opened, 0, true));
  deepStrictEqual(listed.map((e) => e.name), ["x", "l"]);
  deepStrictEqual(rpc.paramsOf("opendir").length, 1, "served from the walk");
  const l = nodeFor(fs, listed[1].entry!, d, "l");
  deepStrictEqual(await fs.readlink(fakeContext(), l), "../t");
  deepStrictEqual(rpc.paramsOf("readlink").length, 0, "the target came with the walk");
  // A change through the mount drops what was walked: asked again.
  await fs.mkdir(fakeContext(), root, "new", 0o755);
  deepStrictEqual(await fs.readlink(fakeContext(), l), "../t");
  deepStrictEqual(rpc.paramsOf("readlink").length, 1);
  value(await fs.opendir(fakeContext(), d));
  deepStrictEqual(rpc.paramsOf("walk").length, 2, "walked again, not served from before");
  deepStrictEqual(rpc.paramsOf("opendir").length, 1);
});

Deno.test("container fs: an unlinked open file answers GETATTR through its handle", async () => {
  const { rpc, fs } = setup();
  rpc.on("open", () => ok({ handle: 9 }));
  rpc.on("fstat", () => ok(fakeStat({ nlink: 0 })));
  const root = fakeNode("");
  const node = fakeNode(keyOf(fakeStat()), root, "f");
  value(await fs.open(fakeContext(), node, O_RDONLY));
  const unlinked = fakeNode(node.key, undefined, "x"); // no parent: no path
  deepStrictEqual(value(await fs.getattr(fakeContext(), unlinked, undefined)).attr.nlink, 0);
  deepStrictEqual(rpc.paramsOf("fstat"), [{ handle: 9 }]);
});

Deno.test("container fs: a file created in a set-group-ID directory found by LOOKUP gets its group", async () => {
  const { rpc, fs, root } = setup();
  const sg = fakeStat({ ino: 9n, mode: S_IFDIR | S_ISGID | 0o775, gid: 100 });
  rpc.on("lstat", () => ok(sg));
  rpc.on("create", (p) => ok({ handle: 4, stat: fakeStat({ ino: 10n, gid: p.owner!.gid }) }));
  rpc.on(
    "mkdir",
    (p) => ok({ stat: fakeStat({ ino: 11n, mode: S_IFDIR | p.mode, gid: p.owner!.gid }) }),
  );
  const dir = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "sg")), root, "sg");
  const ctx = fakeContext({ uid: 1000, gid: 1000 });
  value(await fs.create(ctx, dir, "f", S_IFREG | 0o644, O_WRONLY));
  value(await fs.mkdir(ctx, dir, "d", 0o755));
  deepStrictEqual(rpc.paramsOf("create")[0].owner, { uid: 1000, gid: 100 });
  deepStrictEqual(rpc.paramsOf("mkdir")[0].owner, { uid: 1000, gid: 100 });
  deepStrictEqual(rpc.paramsOf("mkdir")[0].mode, S_ISGID | 0o755);
});

Deno.test("container fs: a directory listed by READDIRPLUS passes its set-group-ID group on", async () => {
  const { rpc, fs, root } = setup();
  const sg = fakeStat({ ino: 9n, mode: S_IFDIR | S_ISGID | 0o775, gid: 100 });
  rpc.on(
    "opendir",
    () =>
      ok({
        handle: 3,
        eof: true,
        entries: [{ name: "sg", ino: 9n, type: DT_DIR, offset: 1n, stat: sg }],
      }),
  );
  rpc.on("create", () => ok({ handle: 4, stat: fakeStat({ ino: 10n }) }));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  const listed = value(await fs.readdir(fakeContext(), root, handle, 0, true));
  const dir = nodeFor(fs, listed[0].entry!, root, "sg");
  value(await fs.create(fakeContext({ uid: 5, gid: 5 }), dir, "f", S_IFREG | 0o644, O_WRONLY));
  deepStrictEqual(rpc.paramsOf("create")[0].owner, { uid: 5, gid: 100 });
});

/** Opens `node` twice for writing; the fake's writes answer through `answerWrite`. */
async function twoWriters(
  options: Partial<ContainerFsOptions>,
  answerWrite: FakeHandler<"write">,
): Promise<
  {
    rpc: FakeRpc;
    fs: ContainerFs;
    node: Node;
    a: Handle;
    b: Handle;
    logger: ReturnType<typeof fakeLogger>;
  }
> {
  const { rpc, fs, root, logger } = setup(options);
  let next = 1;
  rpc.on("lstat", () => ok(fakeStat({ size: 100n })));
  rpc.on("open", () => ok({ handle: next++ }));
  rpc.on("write", answerWrite);
  rpc.on("fsync", () => ok(null));
  rpc.on("flush", () => ok(undefined));
  rpc.on("release", () => ok(null));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const a = value(await fs.open(fakeContext(), node, O_RDWR)).handle;
  const b = value(await fs.open(fakeContext(), node, O_RDWR)).handle;
  return { rpc, fs, node, a, b, logger };
}

const releaseInfo = { flags: O_RDWR, releaseFlags: 0, lockOwner: 0n };

Deno.test("container fs: a stat right after close is answered with the flush's attributes, once, and not after a later write", async () => {
  const { rpc, fs, node, a } = await twoWriters({}, () => ok(10));
  rpc.on("flush", () => ok(fakeStat({ size: 10n })));
  const sizeNow = async (): Promise<bigint> =>
    BigInt(value(await fs.getattr(fakeContext(), node, undefined)).attr.size);
  deepStrictEqual(await fs.write(fakeContext(), node, a, 0, new Uint8Array(10), writeInfo), 10);
  rpc.calls.length = 0;
  deepStrictEqual(await fs.flush(fakeContext(), node, a), undefined);
  deepStrictEqual(await sizeNow(), 10n);
  deepStrictEqual(rpc.methods(), ["flush"]);
  // Used once: the next GETATTR asks (the lstat answers size 100).
  deepStrictEqual(await sizeNow(), 100n);
  // Any change through the mount after the flush makes its attributes old: a truncating open.
  deepStrictEqual(await fs.flush(fakeContext(), node, a), undefined); // nothing written: no note
  deepStrictEqual(await fs.write(fakeContext(), node, a, 0, new Uint8Array(10), writeInfo), 10);
  deepStrictEqual(await fs.flush(fakeContext(), node, a), undefined);
  value(await fs.open(fakeContext(), node, O_RDWR | O_TRUNC));
  deepStrictEqual(await sizeNow(), 100n);
  // A write after the flush makes its attributes old.
  deepStrictEqual(await fs.write(fakeContext(), node, a, 0, new Uint8Array(10), writeInfo), 10);
  deepStrictEqual(await fs.flush(fakeContext(), node, a), undefined);
  deepStrictEqual(await fs.write(fakeContext(), node, a, 10, new Uint8Array(5), writeInfo), 5);
  rpc.calls.length = 0;
  deepStrictEqual(await sizeNow(), 100n);
  deepStrictEqual(rpc.methods().includes("lstat") || rpc.methods().includes("fstat"), true);
});

Deno.test("container fs: a write-behind error left at release is logged and reported by fsync on another handle", async () => {
  const { fs, node, a, b, logger } = await twoWriters({}, () => fail("ENOSPC"));
  // Answered early; the failure arrives after the write returned.
  deepStrictEqual(await fs.write(fakeContext(), node, a, 0, new Uint8Array(10), writeInfo), 10);
  await fs.release(fakeContext(), node, a, releaseInfo);
  assert(logger.lines.some((l) => l.startsWith("warn:") && /ENOSPC/.test(l)), logger.lines.join());
  deepStrictEqual(await fs.fsync(fakeContext(), node, b, false), ENOSPC);
  // Reported once.
  deepStrictEqual(await fs.fsync(fakeContext(), node, b, false), undefined);
});

Deno.test("container fs: with the writeback cache, fsync and flush settle every handle of the inode", async () => {
  const answer = deferred<ReturnType<typeof fail>>();
  const { fs, node, a, b } = await twoWriters({ writebackCache: true }, () => answer.promise);
  // The kernel writes dirty pages through any writable handle: here b.
  deepStrictEqual(await fs.write(fakeContext(), node, b, 0, new Uint8Array(10), writeInfo), 10);
  let synced: void | Errno | "pending" = "pending";
  const sync = fs.fsync(fakeContext(), node, a, false).then((r) => (synced = r));
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(synced, "pending", "fsync waits for the write through the other handle");
  answer.resolve(fail("ENOSPC"));
  await sync;
  deepStrictEqual(synced, ENOSPC);
});

Deno.test("container fs: with the writeback cache, close (flush) reports a failed write of another handle", async () => {
  const { fs, node, a, b } = await twoWriters({ writebackCache: true }, () => fail("ENOSPC"));
  deepStrictEqual(await fs.write(fakeContext(), node, b, 0, new Uint8Array(10), writeInfo), 10);
  deepStrictEqual(await fs.flush(fakeContext(), node, a), ENOSPC);
});

Deno.test("container fs: an interrupted open releases the satellite's handle when it arrives", async () => {
  const { rpc, fs, root } = setup();
  const answer = deferred<ReturnType<typeof ok<{ handle: number }>>>();
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => answer.promise);
  rpc.on("release", () => ok(null));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const controller = new AbortController();
  const opening = fs.open(fakeContext({ controller }), node, O_RDONLY);
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.methods(), ["lookup", "open"], "sent before the interrupt");
  controller.abort();
  deepStrictEqual(await opening, EINTR);
  answer.resolve(ok({ handle: 42 }));
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.paramsOf("release"), [{ handle: 42 }]);
});

Deno.test("container fs: an interrupted opendir releases the satellite's handle when it arrives", async () => {
  const { rpc, fs, root } = setup();
  const answer = deferred<ReturnType<typeof ok<{ handle: number }>>>();
  rpc.on("opendir", () => answer.promise);
  rpc.on("release", () => ok(null));
  const controller = new AbortController();
  const opening = fs.opendir(fakeContext({ controller }), root);
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.methods(), ["opendir"], "sent before the interrupt");
  controller.abort();
  deepStrictEqual(await opening, EINTR);
  answer.resolve(ok({ handle: 43 }));
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.paramsOf("release"), [{ handle: 43 }]);
});

Deno.test("container fs: an interrupted create finishes and answers the file it made", async () => {
  const { rpc, fs, root } = setup();
  const answer = deferred<
    ReturnType<typeof ok<{ handle: number; stat: ReturnType<typeof fakeStat> }>>
  >();
  rpc.on("create", () => answer.promise);
  const controller = new AbortController();
  const creating = fs.create(fakeContext({ controller }), root, "new", S_IFREG | 0o644, O_WRONLY);
  await new Promise((r) => setTimeout(r, 0));
  controller.abort();
  answer.resolve(ok({ handle: 44, stat: fakeStat({ ino: 12n }) }));
  const created = value(await creating);
  deepStrictEqual([created.handle.id, created.entry.key], [44, keyOf(fakeStat({ ino: 12n }))]);
});

Deno.test("container fs: a create interrupted before it is sent answers EINTR and makes nothing", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("create", () => ok({ handle: 44, stat: fakeStat({ ino: 12n }) }));
  const controller = new AbortController();
  controller.abort();
  const r = await fs.create(fakeContext({ controller }), root, "new", S_IFREG | 0o644, O_WRONLY);
  deepStrictEqual(r, EINTR);
  deepStrictEqual(rpc.paramsOf("create"), []);
});

Deno.test("container fs: O_DIRECT is not passed to the satellite", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1 }));
  rpc.on("create", () => ok({ handle: 2, stat: fakeStat({ ino: 12n }) }));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  value(await fs.open(fakeContext(), node, O_RDWR | O_DIRECT));
  value(await fs.create(fakeContext(), root, "g", S_IFREG | 0o644, O_WRONLY | O_DIRECT));
  deepStrictEqual(rpc.paramsOf("open")[0].flags, OpenFlags.O_RDWR);
  deepStrictEqual(rpc.paramsOf("create")[0].flags, OpenFlags.O_WRONLY);
});

Deno.test("container fs: O_DIRECT is stripped in aarch64's numbering too", async () => {
  const { rpc, fs, root } = setup({ hostArch: "aarch64" });
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1 }));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const AARCH64_O_DIRECT = 0o200000;
  value(await fs.open(fakeContext(), node, O_RDWR | AARCH64_O_DIRECT));
  deepStrictEqual(rpc.paramsOf("open")[0].flags, OpenFlags.O_RDWR);
});

function entry(name: string | Uint8Array, ino: bigint, offset: bigint): WireDirEntry {
  return { name, ino, type: DT_REG, offset, stat: fakeStat({ ino }) };
}

Deno.test("container fs: listing entries the kernel must not see are dropped (logged once)", async () => {
  const { rpc, fs, root, logger } = setup();
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [
        { name: ".", ino: 2n, type: DT_DIR, offset: 1n },
        { name: "..", ino: 1n, type: DT_DIR, offset: 2n },
        entry("good", 10n, 3n),
        entry("a/b", 11n, 4n),
        entry("a\0b", 12n, 5n),
        entry("", 13n, 6n),
        entry("x".repeat(256), 14n, 7n),
        entry("é".repeat(128), 15n, 8n), // 256 bytes in UTF-8
        entry("good", 16n, 9n),
        entry(".", 17n, 10n),
        entry("..", 18n, 11n),
        entry("y".repeat(255), 19n, 12n),
      ],
    }));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  const listed = value(await fs.readdir(fakeContext(), root, handle, 0, true));
  deepStrictEqual(listed.map((e) => e.name), [".", "..", "good", "y".repeat(255)]);
  // Positions stay dense: each entry's cookie is the next position.
  deepStrictEqual(listed.map((e) => e.next), [1, 2, 3, 4]);
  deepStrictEqual(listed[2].entry?.key, keyOf(fakeStat({ ino: 10n })));
  deepStrictEqual(listed[0].entry, undefined);
  deepStrictEqual(logger.lines.filter((l) => l.startsWith("warn:")).length, 1, logger.lines.join());
  deepStrictEqual(value(await fs.readdir(fakeContext(), root, handle, 4, true)), []);
});

Deno.test("container fs: a listed stat that makes no sense is not given to the kernel", async () => {
  const { rpc, fs, root } = setup();
  const bad = [
    fakeStat({ ino: 20n, mode: 0o170644 }), // no such file type
    fakeStat({ ino: 21n, size: 1n << 60n }), // beyond exact numbers
    fakeStat({ ino: 22n, mtimeNsec: 1_000_000_000 }),
  ];
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: bad.map((stat, i) => ({
        name: `f${i}`,
        ino: stat.ino,
        type: DT_REG,
        offset: BigInt(i + 1),
        stat,
      })),
    }));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  const listed = value(await fs.readdir(fakeContext(), root, handle, 0, true));
  deepStrictEqual(listed.map((e) => [e.name, e.entry]), [
    ["f0", undefined],
    ["f1", undefined],
    ["f2", undefined],
  ]);
  // A LOOKUP of one of them asks the satellite again, and refuses a senseless answer.
  rpc.on("lstat", () => ok(bad[1]));
  deepStrictEqual((await fs.lookup(fakeContext(), root, "f1") as Errno).name, "EIO");
});

Deno.test("container fs: a write the satellite claims larger than sent is an error", async () => {
  const { rpc, fs, root } = setup({ writeBehind: false });
  rpc.on("lstat", () => ok(fakeStat()));
  rpc.on("open", () => ok({ handle: 1 }));
  rpc.on("write", () => ok(4096));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const h = value(await fs.open(fakeContext(), node, O_RDWR)).handle;
  const r = await fs.write(fakeContext(), node, h, 0, new Uint8Array(10), writeInfo);
  deepStrictEqual((r as Errno).name, "EIO");
});

Deno.test("container fs: a batch of only undecodable names that does not advance ends in EIO", async () => {
  const { rpc, fs, root } = setup();
  const raw = new Uint8Array([0xff, 0xfe]);
  rpc.on("opendir", () => ok({ handle: 3 }));
  rpc.on("readdir", () => ok({ entries: [entry(raw, 5n, 0n)], eof: false }));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  const r = await fs.readdir(fakeContext(), root, handle, 0, true);
  deepStrictEqual((r as Errno).name, "EIO");
});

Deno.test("container fs: a symlink target with a NUL or too long for the kernel is EIO", async () => {
  const { rpc, fs, root } = setup();
  const targets = ["ok/target", "a\0b", "x".repeat(4096), new Uint8Array([0x61, 0x2f, 0x62])];
  rpc.on("readlink", () => ok(targets.shift()!));
  const results = [];
  for (let i = 0; i < 4; i++) results.push(await fs.readlink(fakeContext(), root));
  deepStrictEqual(results.map((r) => (isErrno(r) ? r.name : r)), [
    "ok/target",
    "EIO",
    "EIO",
    "a/b",
  ]);
});

Deno.test("container fs: a write asked to kill set-user/group-ID clears them once (pjdfstest chmod/12)", async () => {
  const { rpc, fs, root } = setup();
  const mode = S_IFREG | S_ISUID | S_ISGID | 0o777;
  rpc.on("lstat", () => ok(fakeStat({ mode, size: 0n })));
  rpc.on("open", () => ok({ handle: 1 }));
  rpc.on("setattr", (p) => ok(fakeStat({ mode: S_IFREG | p.mode!, size: 0n })));
  rpc.on("write", () => ok(1));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  const kill = { ...writeInfo, writeFlags: abi.FUSE_WRITE_KILL_SUIDGID };
  deepStrictEqual(await fs.write(fakeContext(), node, h, 0, new Uint8Array(1), kill), 1);
  deepStrictEqual(rpc.paramsOf("setattr").map((p) => [p.path, p.mode]), [["f", 0o777]]);
  deepStrictEqual(await fs.write(fakeContext(), node, h, 1, new Uint8Array(1), kill), 1);
  deepStrictEqual(rpc.paramsOf("setattr").length, 1, "bits already cleared: no second setattr");
  // Set-group-ID without group execute is mandatory locking, not a privilege: it stays.
  const { rpc: rpc2, fs: fs2, root: root2 } = setup();
  rpc2.on("lstat", () => ok(fakeStat({ mode: S_IFREG | S_ISGID | 0o666, size: 0n })));
  rpc2.on("open", () => ok({ handle: 1 }));
  rpc2.on("write", () => ok(1));
  const node2 = nodeFor(fs, value(await fs2.lookup(fakeContext(), root2, "g")), root2, "g");
  const h2 = value(await fs2.open(fakeContext(), node2, O_WRONLY)).handle;
  deepStrictEqual(await fs2.write(fakeContext(), node2, h2, 0, new Uint8Array(1), kill), 1);
  deepStrictEqual(rpc2.paramsOf("setattr").length, 0);
});

Deno.test("container fs: a write asked to kill set-user-ID asks the file's mode when not cached", async () => {
  const { rpc, fs, root } = setup();
  const mode = S_IFREG | S_ISUID | 0o755;
  rpc.on("open", () => ok({ handle: 3 }));
  rpc.on("fstat", () => ok(fakeStat({ mode, size: 0n })));
  rpc.on("setattr", (p) => ok(fakeStat({ mode: S_IFREG | p.mode!, size: 0n })));
  rpc.on("write", () => ok(1));
  const node = fakeNode(keyOf(fakeStat({ mode })), root, "f"); // never looked up: nothing cached
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  const kill = { ...writeInfo, writeFlags: abi.FUSE_WRITE_KILL_SUIDGID };
  deepStrictEqual(await fs.write(fakeContext(), node, h, 0, new Uint8Array(1), kill), 1);
  deepStrictEqual(rpc.paramsOf("fstat").map((p) => p.handle), [3]);
  deepStrictEqual(rpc.paramsOf("setattr").map((p) => [p.path, p.mode]), [["f", 0o755]]);
});

Deno.test("container fs: an unlinked open file takes new times (writeback flush), not a chmod", async () => {
  const { rpc, fs } = setup();
  rpc.on("open", () => ok({ handle: 9 }));
  rpc.on("fstat", () => ok(fakeStat({ nlink: 0 })));
  const root = fakeNode("");
  const node = fakeNode(keyOf(fakeStat()), root, "f");
  value(await fs.open(fakeContext(), node, O_RDWR));
  const unlinked = fakeNode(node.key, undefined, "x"); // no parent: no path
  value(await fs.getattr(fakeContext(), unlinked, undefined));
  const mtime = { sec: 1_700_000_000, nsec: 5 };
  const r = value(await fs.setattr(fakeContext(), unlinked, { mtime }, undefined));
  deepStrictEqual(r.attr.mtime, mtime);
  deepStrictEqual(rpc.paramsOf("setattr"), [], "no name to set times by");
  deepStrictEqual(await fs.setattr(fakeContext(), unlinked, { mode: 0o600 }, undefined), ENOENT);
});

Deno.test("container fs: a path that now holds another inode answers ESTALE, never its attributes", async () => {
  const { rpc, fs, root } = setup();
  const file = fakeStat({ ino: 7n });
  const link = fakeStat({ ino: 8n, mode: 0o120777, size: 5n });
  let atPath = file;
  rpc.on("lstat", () => ok(atPath));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "sw")), root, "sw");
  // inside the container, "sw" is replaced by a symlink after the kernel's lookup
  atPath = link;
  deepStrictEqual(await fs.getattr(fakeContext(), node, undefined), ESTALE);
  rpc.on("setattr", () => ok(link));
  deepStrictEqual(await fs.setattr(fakeContext(), node, { mtime: "now" }, undefined), ESTALE);
  rpc.on("setattr", () => fail("EOPNOTSUPP")); // chmod met the symlink and refused it
  deepStrictEqual(await fs.setattr(fakeContext(), node, { mode: 0o600 }, undefined), ESTALE);
  rpc.on("setattr", () => fail("ELOOP")); // so did truncate
  deepStrictEqual(await fs.setattr(fakeContext(), node, { size: 0 }, undefined), ESTALE);
  // the other way round: a symlink node whose path now holds a regular file
  rpc.on("readlink", () => fail("EINVAL"));
  deepStrictEqual(await fs.readlink(fakeContext(), node), ESTALE);
  // the number reused at once by an inode of another type is not the kernel's inode either
  atPath = { ...link, ino: file.ino };
  deepStrictEqual(await fs.getattr(fakeContext(), node, undefined), ESTALE);
  // the same inode still answers, and the root is the root whatever its key
  atPath = { ...file, size: 99n };
  deepStrictEqual(value(await fs.getattr(fakeContext(), node, undefined)).attr.size, 99);
  atPath = fakeStat({ ino: 2n, mode: 0o40755 });
  deepStrictEqual(value(await fs.getattr(fakeContext(), root, undefined)).attr.ino, 2n);
});

Deno.test("container fs: a truncate through a handle whose name went elsewhere answers the handle's file", async () => {
  const { rpc, fs, root } = setup();
  const file = fakeStat({ ino: 7n });
  rpc.on("lstat", () => ok(file));
  rpc.on("open", () => ok({ handle: 4 }));
  const node = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  const handle = value(await fs.open(fakeContext(), node, O_RDWR)).handle as Handle;
  rpc.on("setattr", () => ok(fakeStat({ ino: 9n }))); // another file took the name
  rpc.on("fstat", () => ok({ ...file, size: 0n }));
  const r = value(await fs.setattr(fakeContext(), node, { size: 0 }, handle));
  deepStrictEqual([r.attr.ino, r.attr.size], [7n, 0]);
});

Deno.test("container fs: a directory made through the mount is known empty for the listing timeout", async () => {
  const { rpc, fs, root } = setup();
  rpc.on("lstat", (p) => p.path === "" ? ok(fakeStat({ mode: S_IFDIR | 0o755 })) : fail("ENOENT"));
  rpc.on("mkdir", () => ok({ stat: fakeStat({ ino: 8n, mode: S_IFDIR | 0o755 }) }));
  const dir = nodeFor(fs, value(await fs.mkdir(fakeContext(), root, "new", 0o755)), root, "new");
  // The creates that follow (`mkdir d && touch d/a d/b`) need not ask whether their names exist.
  deepStrictEqual(await fs.lookup(fakeContext(), dir, "a"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").filter((p) => p.path !== "").length, 0);
  await new Promise((r) => setTimeout(r, 1100)); // past the listing timeout (1 s here)
  deepStrictEqual(await fs.lookup(fakeContext(), dir, "a"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => p.path).filter((p) => p !== ""), ["new/a"]);
});

/** An opendir answer listing `stats` (regular files by name) whole, in one batch. */
function wholeListing(stats: Map<string, Stat>): ResultOf<"opendir"> {
  return {
    handle: 3,
    eof: true,
    entries: [...stats].map(([name, stat], i) => ({
      name,
      ino: stat.ino,
      type: DT_REG,
      offset: BigInt(i + 1),
      stat,
    })),
  };
}

Deno.test("container fs: names looked up one by one get their directory listed at the second miss", async () => {
  const { rpc, fs, root } = setup();
  const stats = new Map(
    ["a", "b", "c", "d"].map((n, i) => [n, fakeStat({ ino: 20n + BigInt(i) })]),
  );
  const listed = deferred<void>();
  rpc.on("opendir", async () => {
    await listed.promise;
    return ok(wholeListing(stats));
  });
  rpc.on("release", () => ok(null));
  rpc.on("lstat", (p) => {
    const stat = stats.get(String(p.path));
    return stat ? ok(stat) : fail("ENOENT");
  });
  // The first miss is a path walked through: stat-ed, nothing listed.
  deepStrictEqual(value(await fs.lookup(fakeContext(), root, "a")).key, keyOf(stats.get("a")!));
  deepStrictEqual(rpc.methods(), ["lookup"]);
  // The second lists the directory; the LOOKUPs meanwhile wait for it rather than each stat.
  const asked = ["b", "c", "nope"].map((n) => fs.lookup(fakeContext(), root, n));
  listed.resolve();
  const [b, c, nope] = await Promise.all(asked);
  deepStrictEqual(value(b).key, keyOf(stats.get("b")!));
  deepStrictEqual(value(c).key, keyOf(stats.get("c")!));
  deepStrictEqual(nope, ENOENT, "absent from the complete listing");
  deepStrictEqual(value(await fs.lookup(fakeContext(), root, "d")).key, keyOf(stats.get("d")!));
  deepStrictEqual(rpc.methods(), ["lookup", "opendir", "release"], "one listing, no more stats");
});

/**
 * The root directory holding `stats` (by name) as the satellite serves it: listed whole, looked
 * up, unlinked from; `listed` counts the names its listings carried.
 */
function serveDirectory(rpc: FakeRpc, stats: Map<string, Stat>): { listed: number } {
  const served = { listed: 0 };
  rpc.on("opendir", () => {
    served.listed += stats.size;
    return ok(wholeListing(stats));
  });
  rpc.on("release", () => ok(null));
  rpc.on("lookup", (p) => {
    const stat = stats.get(String(p.path));
    return stat ? ok({ stat }) : fail("ENOENT");
  });
  rpc.on("unlink", (p) => {
    stats.delete(String(p.path));
    return ok(undefined);
  });
  return served;
}

Deno.test("container fs: a directory changed between LOOKUPs is listed again only after its names / 8 misses", async () => {
  // An unlink loop over names the kernel forgot (its entries timed out): every unlink drops the
  // listing, so listing at every second miss cost a listing per two unlinks (quadratic: 4 ms per
  // unlink in a 500-name directory).
  const { rpc, fs, root } = setup();
  const names = Array.from({ length: 200 }, (_, i) => `f${i}`);
  const stats = new Map(names.map((n, i) => [n, fakeStat({ ino: 1000n + BigInt(i) })]));
  const served = serveDirectory(rpc, stats);
  for (const name of names) {
    value(await fs.lookup(fakeContext(), root, name));
    await fs.unlink(fakeContext(), root, name);
  }
  // Listing at every second miss would list 200 + 199 + … names (10,000); now the first listing's
  // 200 and at most 8 per miss after it.
  assert(rpc.paramsOf("opendir").length >= 2, "listed at all");
  assert(served.listed <= 200 + 8 * 200, `${served.listed} names listed for 200 unlinks`);
  deepStrictEqual(rpc.paramsOf("unlink").length, 200);
});

Deno.test("container fs: an unlink of a name with no other link keeps the listing that answers the next LOOKUPs", async () => {
  // `rm` of names the kernel forgot: a LOOKUP, then the UNLINK, name after name. The directory's
  // listing answers the LOOKUPs; an unlink drops only its own name when the kernel's node for it
  // has one link (with more, the other names' link count changes: every listing goes).
  const { rpc, fs, root } = setup();
  const children: Record<string, Node> = {};
  fs.attachKernel(kernelOf(root, children));
  const names = Array.from({ length: 50 }, (_, i) => `f${i}`);
  const nlink = (name: string): number => name === "f20" ? 2 : 1;
  const stats = new Map(
    names.map((n, i) => [n, fakeStat({ ino: 1000n + BigInt(i), nlink: nlink(n) })]),
  );
  serveDirectory(rpc, stats);
  for (const name of names) {
    children[name] = nodeFor(fs, value(await fs.lookup(fakeContext(), root, name)), root, name);
    await fs.unlink(fakeContext(), root, name);
  }
  // f0 asks, f1 lists the directory; after f20's unlink (two links) the listing is gone: f21 to
  // f26 ask, f27 lists it again (at its 50 / 8 = 7th miss), and that listing serves the rest.
  deepStrictEqual(
    rpc.paramsOf("lookup").map((p) => p.path),
    ["f0", "f21", "f22", "f23", "f24", "f25", "f26"],
  );
  deepStrictEqual(rpc.paramsOf("opendir").length, 2);
  deepStrictEqual(rpc.paramsOf("unlink").length, 50);
});

Deno.test("container fs: a listing for LOOKUPs walks nothing ahead; an OPENDIR below it does", async () => {
  // A cold `stat` of two names under the root listed it, and walked the whole container
  // ahead: the creates made next waited behind those walks (the first file of a create loop
  // right after mounting waited 120 ms).
  const { rpc, fs, root } = setup();
  const sub = fakeStat({ ino: 5n, mode: S_IFDIR | 0o755 });
  rpc.on("opendir", () =>
    ok({
      handle: 10,
      eof: true,
      entries: [{ name: "d", ino: 5n, type: DT_DIR, offset: 1n, stat: sub }],
    }));
  rpc.on("release", () => ok(null));
  rpc.on(
    "walk",
    (p) =>
      ok({
        dirs: p.paths.map((path) => ({ path, self: sub, entries: [] })),
        walked: p.paths.length,
      }),
  );
  rpc.on("lookup", () => fail("ENOENT"));
  deepStrictEqual(await fs.lookup(fakeContext(), root, "x"), ENOENT);
  const d = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "d")), root, "d");
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.methods(), ["lookup", "opendir", "release"], "listed, not walked");
  value(await fs.opendir(fakeContext(), d));
  deepStrictEqual(rpc.paramsOf("walk").map((p) => p.paths), [["d"]], "walked once opened");
});

Deno.test("container fs: a listing for LOOKUPs that fails leaves the names to lstat", async () => {
  const { rpc, fs, root } = setup();
  const stat = fakeStat({ ino: 30n });
  rpc.on("opendir", () => fail("EACCES"));
  rpc.on("lstat", () => ok(stat));
  value(await fs.lookup(fakeContext(), root, "x"));
  value(await fs.lookup(fakeContext(), root, "y"));
  value(await fs.lookup(fakeContext(), root, "z"));
  deepStrictEqual(rpc.methods(), ["lookup", "opendir", "lookup", "lookup"]);
});

Deno.test("container fs: a walk's listing on its way to an OPENDIR when an unlink begins answers no LOOKUP", async () => {
  // pjdfstest with -j2 (CI): an OPENDIR took the walked listing of a directory, an unlink in it
  // began while that was resolving, and the listing then answered the next LOOKUP of the name.
  const inSub = { name: "x", ino: 6n, type: DT_REG, offset: 1n, stat: fakeStat({ ino: 6n }) };
  const { rpc, fs, d } = await withWalkedSubdir([inSub]);
  rpc.on("unlink", () => ok(undefined));
  rpc.on("lstat", () => fail("ENOENT"));
  // What the satellite shows of d once x is gone.
  rpc.on("opendir", () => ok({ handle: 50, eof: true, entries: [] }));
  rpc.on("walk", (p) => ok({ dirs: p.paths.map((path) => ({ path, entries: [] })), walked: 0 }));
  const opening = fs.opendir(fakeContext(), d);
  const unlinking = fs.unlink(fakeContext(), d, "x");
  value(await opening);
  await unlinking;
  deepStrictEqual(await fs.lookup(fakeContext(), d, "x"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").length, 1, "asked the satellite, not the listing");
  deepStrictEqual(rpc.paramsOf("opendir").length, 2, "d opened for real, not from the walk");
});

Deno.test("container fs: the first LOOKUP miss in a directory walked ahead is answered from the walk", async () => {
  const inSub = { name: "x", ino: 6n, type: DT_REG, offset: 1n, stat: fakeStat({ ino: 6n }) };
  const { rpc, fs, d } = await withWalkedSubdir([inSub]);
  rpc.on("lstat", () => fail("ENOENT"));
  // git status stats d/x before it reads d: the walk answers, and knows that d/y is not there.
  deepStrictEqual(value(await fs.lookup(fakeContext(), d, "x")).key, keyOf(inSub.stat));
  deepStrictEqual(await fs.lookup(fakeContext(), d, "y"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").length, 0);
  deepStrictEqual(rpc.paramsOf("opendir").length, 1, "d was not opened");
  // …and the walk still serves d's OPENDIR.
  value(await fs.opendir(fakeContext(), d));
  deepStrictEqual(rpc.paramsOf("opendir").length, 1);
});

Deno.test("container fs: after a change through the mount no earlier listing answers a LOOKUP (a link changes every name's nlink)", async () => {
  const { rpc, fs, root } = await listRoot();
  const f = fakeStat({ ino: 7n });
  rpc.on("link", () => ok({ stat: { ...f, nlink: 2 } }));
  rpc.on("lstat", () => ok({ ...f, nlink: 2 }));
  rpc.on("opendir", () => fail("EACCES"));
  const fNode = fakeNode(keyOf(f), root, "f");
  value(await fs.link(fakeContext(), fNode, root, "h"));
  deepStrictEqual(value(await fs.lookup(fakeContext(), root, "f")).attr.nlink, 2);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => p.path), ["f"]);
});

Deno.test("container fs: a create or a write in a directory leaves the other names it listed answering LOOKUPs (tar, git checkout)", async () => {
  const { rpc, fs, root } = await listRoot();
  rpc.on("create", () => ok({ handle: 4, stat: fakeStat({ ino: 9n }) }));
  rpc.on("setattr", () => ok(fakeStat({ ino: 7n, mode: 0o100600 })));
  value(await fs.create(fakeContext(), root, "new", 0o644, O_RDWR));
  const f = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  value(await fs.setattr(fakeContext(), f, { mode: 0o600 }, undefined));
  deepStrictEqual(
    value(await fs.lookup(fakeContext(), root, "g")).key,
    keyOf(fakeStat({ ino: 8n })),
  );
  deepStrictEqual(rpc.paramsOf("lookup").length, 0, "f and g answered from the listing");
});

Deno.test("container fs: a chmod of a file with two names makes the other name's listed attributes stale", async () => {
  const { rpc, fs, root } = setup();
  const f = fakeStat({ ino: 7n, nlink: 2 });
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [
        { name: "f", ino: 7n, type: DT_REG, offset: 1n, stat: f },
        { name: "h", ino: 7n, type: DT_REG, offset: 2n, stat: f },
      ],
    }));
  rpc.on("readdir", () => ok({ entries: [], eof: true }));
  rpc.on("setattr", () => ok({ ...f, mode: 0o100600 }));
  rpc.on("lstat", () => ok({ ...f, mode: 0o100600 }));
  const handle = value(await fs.opendir(fakeContext(), root)).handle;
  value(await fs.readdir(fakeContext(), root, handle, 0, true));
  const fNode = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "f")), root, "f");
  value(await fs.setattr(fakeContext(), fNode, { mode: 0o600 }, undefined));
  deepStrictEqual(value(await fs.lookup(fakeContext(), root, "h")).attr.mode, 0o100600);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => p.path), ["h"], "h asked again");
});

/** A root listed whole with five small files f0..f4 (`f${k}` holds `k` repeated k+1 times). */
async function rootOfSmallFiles(
  options: Partial<ContainerFsOptions> = {},
  count = 5,
): Promise<{ rpc: FakeRpc; fs: ContainerFs; root: Node; nodes: Node[] }> {
  const { rpc, fs, root } = setup(options);
  const stats = Array.from(
    { length: count },
    (_, k) => fakeStat({ ino: BigInt(10 + k), size: BigInt(k + 1) }),
  );
  rpc.on("opendir", () =>
    ok({
      handle: 3,
      eof: true,
      entries: [
        { name: ".", ino: 1n, type: DT_DIR, offset: 1n },
        { name: "..", ino: 1n, type: DT_DIR, offset: 2n },
        ...stats.map((stat, k) => ({
          name: `f${k}`,
          ino: stat.ino,
          type: DT_REG,
          offset: BigInt(k + 3),
          stat,
        })),
      ],
    }));
  rpc.on("open", () => ok({ handle: 9 }));
  rpc.on("readFiles", (p) =>
    ok(p.names.map((name) => {
      const k = Number(String(name).slice(1));
      return { stat: stats[k], data: new TextEncoder().encode(String(k).repeat(k + 1)) };
    })));
  const listed = value(
    await fs.readdir(
      fakeContext(),
      root,
      value(await fs.opendir(fakeContext(), root)).handle,
      0,
      true,
    ),
  );
  const nodes = listed.filter((e) => e.entry).map((e) => nodeFor(fs, e.entry!, root, e.name));
  return { rpc, fs, root, nodes };
}

Deno.test("container fs: after two opens in a row in a directory, its next small files are read in one call and opened without one", async () => {
  const { rpc, fs, root, nodes } = await rootOfSmallFiles();
  value(await fs.open(fakeContext(), nodes[0], O_RDONLY));
  value(await fs.open(fakeContext(), nodes[1], O_RDONLY));
  // The second open comes with the fetch (its own file first): no round trip of its own.
  deepStrictEqual(rpc.methods(), ["opendir", "open", "readFiles"]);
  deepStrictEqual(rpc.calls[2].params, {
    at: undefined,
    dir: "",
    names: ["f1", "f2", "f3", "f4"],
    maxFileBytes: 65536,
    maxBytes: 524288,
  });
  for (const k of [2, 3, 4]) {
    const opened = value(await fs.open(fakeContext(), nodes[k], O_RDONLY));
    const data = value(await fs.read(fakeContext(), nodes[k], opened.handle, 0, 4096));
    deepStrictEqual(new TextDecoder().decode(data), String(k).repeat(k + 1));
    value(
      await fs.release(fakeContext(), nodes[k], opened.handle, {
        flags: O_RDONLY,
        lockOwner: 0n,
        releaseFlags: 0,
      }),
    );
  }
  deepStrictEqual(rpc.methods().slice(3), [], "no open, read or release reached the satellite");
  // Used once: the kernel keeps the pages from then on.
  value(await fs.open(fakeContext(), nodes[2], O_RDONLY));
  deepStrictEqual(rpc.methods().slice(3), ["open"]);
  void root;
});

Deno.test("container fs: small files read ahead serve no open after a change through the mount or in the directory", async () => {
  for (const change of ["mount", "event", "attributes"] as const) {
    const { rpc, fs, root, nodes } = await rootOfSmallFiles({
      live: { timeout: 60, maxWatches: 100 },
    });
    fs.onChanges([{ dir: "0:1:1", what: ChangeKind.WATCHED, name: "" }]);
    value(await fs.open(fakeContext(), nodes[0], O_RDONLY));
    value(await fs.open(fakeContext(), nodes[1], O_RDONLY));
    assert(rpc.methods().includes("readFiles"));
    if (change === "mount") {
      rpc.on("unlink", () => ok(undefined));
      value(await fs.unlink(fakeContext(), root, "other"));
    } else if (change === "event") {
      fs.onChanges([{ dir: "0:1:1", name: "f3", what: ChangeKind.DATA }]);
    } else {
      // The kernel was told other attributes since (a newer size): not the same contents.
      const stat = fakeStat({ ino: 13n, size: 9n });
      rpc.on("lstat", () => ok(stat));
      value(await fs.getattr(fakeContext(), nodes[3], undefined));
    }
    const before = rpc.methods().length;
    value(await fs.open(fakeContext(), nodes[3], O_RDONLY));
    assert(rpc.methods().slice(before).includes("open"), `${change}: opened through the satellite`);
  }
});

Deno.test("container fs: a fetch asks for at most MAX_READ_FILES names, the opening file's first", async () => {
  const { rpc, fs, nodes } = await rootOfSmallFiles({}, 300);
  value(await fs.open(fakeContext(), nodes[0], O_RDONLY));
  value(await fs.open(fakeContext(), nodes[1], O_RDONLY));
  const [asked] = rpc.paramsOf("readFiles");
  deepStrictEqual([asked.names.length, asked.names[0], asked.names[1]], [256, "f1", "f2"]);
  deepStrictEqual(rpc.methods().filter((m) => m === "open").length, 1, "f1 came with the fetch");
});

Deno.test("container fs: names in a directory go by its node handle; a stale one is dropped and the call made again from the root", async () => {
  const { rpc, fs, root } = setup();
  const dir = fakeStat({ ino: 40n, mode: S_IFDIR | 0o755 });
  rpc.on("lstat", () => ok(fakeStat({ ino: 1n, mode: S_IFDIR | 0o755 })));
  rpc.on("lookup", () => ok({ stat: dir, node: 77 }));
  let stale = true;
  rpc.on("unlink", (p) => stale && p.at !== undefined ? fail("ESTALE") : ok(undefined));
  const d = nodeFor(fs, value(await fs.lookup(fakeContext(), root, "d")), root, "d");
  rpc.on("lookup", () => fail("ENOENT"));
  deepStrictEqual(await fs.lookup(fakeContext(), d, "x"), ENOENT);
  deepStrictEqual(rpc.paramsOf("lookup").map((p) => [p.at, p.path]), [[undefined, "d"], [77, "x"]]);
  value(await fs.unlink(fakeContext(), d, "y"));
  deepStrictEqual(rpc.paramsOf("unlink").map((p) => [p.at, p.path]), [[77, "y"], [
    undefined,
    "d/y",
  ]]);
  stale = false;
  value(await fs.unlink(fakeContext(), d, "z"));
  deepStrictEqual(
    rpc.paramsOf("unlink").at(-1),
    { path: "d/z" },
    "the stale handle is not used again",
  );
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.paramsOf("forget"), [{ nodes: [77] }], "and given back");
});

Deno.test("container fs: the node handle of a directory goes back when the kernel forgets it", async () => {
  const { rpc, fs, root } = setup();
  let issued = 9;
  rpc.on(
    "lookup",
    () => ok({ stat: fakeStat({ ino: 41n, mode: S_IFDIR | 0o755 }), node: issued++ }),
  );
  const first = value(await fs.lookup(fakeContext(), root, "d"));
  value(await fs.lookup(fakeContext(), root, "d2")); // the same inode again: its second handle goes back
  fs.forget(nodeFor(fs, first, root, "d"));
  await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(rpc.paramsOf("forget"), [{ nodes: [10] }, { nodes: [9] }]);
});
