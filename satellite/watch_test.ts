// The change feed against a real inotify instance on a temporary directory: notices, changes
// by name, echo suppression of the client's own requests, the watch limit, unwatch.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { AT_FDCWD, O_CLOEXEC, O_PATH } from "../src/linux/mod.ts";
import {
  type Change,
  ChangeKind,
  type Handlers,
  Later,
  type NowReply,
  OpenFlags,
  type Reply,
  RpcFailure,
} from "../src/protocol/mod.ts";
import { SatelliteFs } from "./fs.ts";
import { cString, Libc } from "./libc.ts";
import { NodeHandles } from "./nodes.ts";
import { Watcher } from "./watch.ts";

interface Setup {
  dir: string;
  fs: SatelliteFs;
  handlers: Handlers;
  watcher: Watcher;
  /** Changes emitted so far (drained). */
  take(): Change[];
  /** What was emitted so far, without draining the inotify queue first. */
  sent(): Change[];
  close(): void;
}

/** `patch` may replace what the watcher calls on the filesystem side (to stage a race). */
function setup(patch?: (fs: SatelliteFs) => void): Setup {
  const libc = new Libc();
  const dir = Deno.makeTempDirSync({ prefix: "dockerfuse-watch-" });
  const rootFd = libc.fn.openat(AT_FDCWD, cString(dir)!, O_PATH | O_CLOEXEC, 0);
  ok(rootFd >= 0);
  const nodes = new NodeHandles(100, (fd) => libc.fn.close(fd));
  const fs = new SatelliteFs(libc, rootFd, { procFd: "/proc/self/fd", nodes });
  patch?.(fs);
  let emitted: Change[] = [];
  let inotifyFd = -1;
  const watcher = new Watcher(libc, fs, {
    emit: (changes) => emitted.push(...changes),
    flush: () => {},
  }, { procFd: "/proc/self/fd", addSource: (fd) => inotifyFd = fd, log: () => {} });
  return {
    dir,
    fs,
    handlers: watcher.wrap(fs.handlers()),
    watcher,
    sent() {
      const out = emitted;
      emitted = [];
      return out;
    },
    take() {
      watcher.drain(true);
      const out = emitted;
      emitted = [];
      return out;
    },
    close() {
      fs.closeAll();
      if (inotifyFd >= 0) libc.fn.close(inotifyFd);
      libc.fn.close(rootFd);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** A handler's answer given at once (these handlers run without an I/O worker). */
function now<R>(reply: Reply<R>): NowReply<R> {
  ok(!(reply instanceof Later), "answered later");
  return reply;
}

const kinds = (changes: Change[]): string[] =>
  changes.map((c) => `${c.what}${c.name === undefined ? "" : ` ${String(c.name)}`}`);

Deno.test("watch: the root and stat-ed directories are watched; changes come by name", () => {
  const s = setup();
  try {
    Deno.mkdirSync(`${s.dir}/d`);
    const started = now(s.handlers.watch({ maxWatches: 10 }));
    ok(!(started instanceof RpcFailure) && started.root !== undefined);
    deepStrictEqual(s.take(), [{ dir: started.root, what: ChangeKind.WATCHED, name: "" }]);
    const d = now(s.handlers.lstat({ path: "d" }));
    ok(!(d instanceof RpcFailure));
    const dKey = `${d.devMajor}:${d.devMinor}:${d.ino}`;
    deepStrictEqual(s.take(), [{ dir: dKey, what: ChangeKind.WATCHED }]);
    // Made by someone else (not a request): told.
    Deno.writeTextFileSync(`${s.dir}/d/new`, "x");
    Deno.chmodSync(`${s.dir}/d/new`, 0o600);
    Deno.renameSync(`${s.dir}/d/new`, `${s.dir}/d/moved`);
    const changes = s.take();
    ok(changes.every((c) => c.dir === dKey));
    deepStrictEqual(kinds(changes), [
      `${ChangeKind.NAME | ChangeKind.DATA | ChangeKind.ATTR} new`, // merged per name
      `${ChangeKind.NAME} moved`,
    ]);
    equal(s.watcher.watches, 2);
  } finally {
    s.close();
  }
});

Deno.test("watch: the client's own changes are not echoed; others' meanwhile are", () => {
  const s = setup();
  try {
    s.handlers.watch({ maxWatches: 10 });
    s.take();
    const created = now(s.handlers.create({ path: "mine", flags: 0o1101, mode: 0o644 }));
    ok(!(created instanceof RpcFailure));
    s.handlers.write({ handle: created.handle, offset: 0n, data: new Uint8Array([1, 2]) });
    s.handlers.chmod({ path: "mine", mode: 0o600 });
    s.handlers.release({ handle: created.handle });
    // Opened again with O_TRUNC (an editor saving in place): its truncation is the client's own.
    const truncated = now(
      s.handlers.open({ path: "mine", flags: OpenFlags.O_WRONLY | OpenFlags.O_TRUNC }),
    );
    ok(!(truncated instanceof RpcFailure));
    s.handlers.release({ handle: truncated.handle });
    Deno.writeTextFileSync(`${s.dir}/theirs`, "y");
    s.handlers.unlink({ path: "mine" });
    deepStrictEqual(kinds(s.take()), [`${ChangeKind.NAME | ChangeKind.DATA} theirs`]);
  } finally {
    s.close();
  }
});

Deno.test("watch: past the limit no notice; unwatch drops a watch with a notice", () => {
  const s = setup();
  try {
    Deno.mkdirSync(`${s.dir}/a`);
    Deno.mkdirSync(`${s.dir}/b`);
    s.handlers.watch({ maxWatches: 2 });
    const listed = now(s.handlers.opendir({ path: "", readAhead: 100 }));
    ok(!(listed instanceof RpcFailure));
    // The root and one of a, b: the limit is 2.
    const notices = s.take();
    equal(notices.length, 2);
    equal(s.watcher.watches, 2);
    s.handlers.unwatch({ dirs: [notices[1].dir] });
    deepStrictEqual(s.take(), [{ dir: notices[1].dir, what: ChangeKind.UNWATCHED }]);
    equal(s.watcher.watches, 1);
  } finally {
    s.close();
  }
});

Deno.test("watch: an answer goes out after the events queued when it was read", () => {
  const s = setup();
  try {
    Deno.writeTextFileSync(`${s.dir}/gone`, "x");
    now(s.handlers.watch({ maxWatches: 10 }));
    s.take();
    Deno.removeSync(`${s.dir}/gone`); // by someone else, before the listing
    const listed = now(s.handlers.opendir({ path: "", readAhead: 100 }));
    ok(!(listed instanceof RpcFailure));
    ok(!listed.entries?.names.includes("gone"));
    // Emitted before the handler returned, so before its answer on the stream.
    deepStrictEqual(kinds(s.sent()), [`${ChangeKind.NAME} gone`]);
    Deno.writeTextFileSync(`${s.dir}/new`, "y");
    now(s.handlers.lstat({ path: "new" }));
    deepStrictEqual(kinds(s.sent()), [`${ChangeKind.NAME | ChangeKind.DATA} new`]);
  } finally {
    s.close();
  }
});

Deno.test("watch: a directory the client makes is announced only while still empty", () => {
  const s = setup();
  try {
    s.handlers.watch({ maxWatches: 10 });
    s.take();
    const made = now(s.handlers.mkdir({ path: "new", mode: 0o755 }));
    ok(!(made instanceof RpcFailure));
    const notices = s.take();
    // Watched (no echo of its own creation in the root); then a change in it is told.
    deepStrictEqual(kinds(notices), [`${ChangeKind.WATCHED}`]);
    Deno.writeTextFileSync(`${s.dir}/new/theirs`, "y");
    deepStrictEqual(kinds(s.take()).map((k) => k.endsWith(" theirs")), [true]);
  } finally {
    s.close();
  }
  // Something was made in it before the watch was in place: the watch is dropped again.
  const raced = setup((fs) => fs.emptyDir = () => false);
  try {
    raced.handlers.watch({ maxWatches: 10 });
    raced.take();
    now(raced.handlers.mkdir({ path: "new", mode: 0o755 }));
    deepStrictEqual(kinds(raced.take()), [`${ChangeKind.WATCHED}`, `${ChangeKind.UNWATCHED}`]);
    equal(raced.watcher.watches, 1, "the root only");
  } finally {
    raced.close();
  }
});

Deno.test("watch: emptyDir tells an empty directory from one with entries", () => {
  const s = setup();
  const fs = s.fs;
  try {
    Deno.mkdirSync(`${s.dir}/e`);
    Deno.mkdirSync(`${s.dir}/f`);
    Deno.writeTextFileSync(`${s.dir}/f/x`, "");
    deepStrictEqual([
      fs.emptyDir({ path: "e" }),
      fs.emptyDir({ path: "f" }),
      fs.emptyDir({ path: "missing" }),
    ], [
      true,
      false,
      undefined,
    ]);
  } finally {
    s.close();
  }
});

Deno.test("watch: a directory changed through its node handle echoes neither in its parent's watch nor in its own", () => {
  const s = setup();
  try {
    now(s.handlers.watch({ maxWatches: 100 }));
    Deno.mkdirSync(`${s.dir}/d`);
    const found = now(s.handlers.lookup({ path: "d" }));
    ok(!(found instanceof RpcFailure) && found.node !== undefined, "a node handle");
    s.take(); // the WATCHED notices
    const at = found.node;
    now(s.handlers.chmod({ at, path: "", mode: 0o700 }));
    const time = { sec: 1, nsec: 0 };
    now(s.handlers.utimens({ at, path: "", atime: time, mtime: time }));
    deepStrictEqual(kinds(s.take()), [], "its own changes");
    Deno.chmodSync(`${s.dir}/d`, 0o755); // the container's change is still told
    deepStrictEqual(kinds(s.take()).sort(), [`${ChangeKind.ATTR} d`, `${ChangeKind.SELF}`]);
  } finally {
    s.close();
  }
});
