import { deepStrictEqual, equal, ok as assert } from "node:assert/strict";
import { DT_DIR, DT_LNK, DT_REG, S_IFDIR, S_IFLNK } from "../linux/mod.ts";
import type { ParamsOf, ResultOf, RpcResult, Stat, WalkDir, WalkEntry } from "../protocol/mod.ts";
import { MountChanges } from "./mount_changes.ts";
import { SubtreeAhead, type SubtreeAheadOptions } from "./subtree.ts";
import { deferred, FakeRpc, fakeStat, ok } from "./_fake_rpc.ts";

const ROOT_KEY = "8:1:2";

/** Top-level directories by name (the fake satellite's walks answer their own Stat). */
const TOP = new Map<string, Stat>();

function dir(name: string, ino: bigint, devMinor = 1): WalkEntry {
  const stat = fakeStat({ ino, mode: S_IFDIR | 0o755, devMinor });
  TOP.set(name, stat);
  return { name, ino, type: DT_DIR, offset: ino, stat };
}

function file(name: string, ino: bigint): WalkEntry {
  return { name, ino, type: DT_REG, offset: ino, stat: fakeStat({ ino }) };
}

function link(name: string, ino: bigint, target: string): WalkEntry {
  return {
    name,
    ino,
    type: DT_LNK,
    offset: ino,
    stat: fakeStat({ ino, mode: S_IFLNK | 0o777 }),
    target,
  };
}

/** A tree the fake satellite walks: path → entries. */
type Tree = Record<string, WalkEntry[]>;

/** Walks `tree` as the satellite would: depth first, at most `budget` directories per answer. */
type WalkResult = RpcResult<ResultOf<"walk">>;

function walker(tree: Tree, budget = 100): (p: ParamsOf<"walk">) => WalkResult {
  const selfOf = (path: string): Stat | undefined => {
    const cut = path.lastIndexOf("/");
    if (cut < 0) return TOP.get(path);
    const name = path.slice(cut + 1);
    return tree[path.slice(0, cut)]?.find((e) => e.name === name)?.stat;
  };
  return (p) => {
    const dirs: WalkDir[] = [];
    let walked = 0;
    const visit = (path: string): boolean => {
      if (dirs.length >= budget) return false;
      const entries = tree[path];
      if (entries === undefined) return true;
      dirs.push({ path, self: selfOf(path), entries });
      for (const e of entries) {
        if (e.type === DT_DIR && e.stat?.devMinor === 1 && !visit(`${path}/${String(e.name)}`)) {
          return false;
        }
      }
      return true;
    };
    for (const path of p.paths) {
      if (!visit(path as string)) break;
      walked++;
    }
    return ok({ dirs, walked });
  };
}

function setup(tree: Tree, options: Partial<SubtreeAheadOptions> = {}, budget?: number): {
  rpc: FakeRpc;
  ahead: SubtreeAhead;
  changes: MountChanges;
  clock: { now: number };
} {
  const rpc = new FakeRpc();
  rpc.on("walk", walker(tree, budget));
  const changes = new MountChanges();
  const clock = { now: 1000 };
  const ahead = new SubtreeAhead(rpc.call, changes, {
    ttlMs: 1000,
    now: () => clock.now,
    ...options,
  });
  return { rpc, ahead, changes, clock };
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));
const key = (ino: bigint): string => `8:1:${ino}`;

const TREE: Tree = {
  "a": [dir("b", 4n), file("f", 5n), link("l", 6n, "../f")],
  "a/b": [file("g", 7n), dir("c", 8n)],
  "a/b/c": [],
  "m": [file("x", 11n)], // another filesystem: never walked
};
const ROOT_LISTING = [
  { name: ".", ino: 2n, type: DT_DIR, offset: 1n },
  dir("a", 3n),
  file("top", 9n),
  dir("m", 10n, 99),
];

Deno.test("subtree: one walk brings a whole subtree, served within its time", async () => {
  const { rpc, ahead } = setup(TREE);
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  deepStrictEqual((await ahead.take(key(3n)))?.entries, TREE["a"]);
  deepStrictEqual(rpc.paramsOf("walk").map((p) => p.paths), [["a"]], "not into the mount point");
  deepStrictEqual((await ahead.take(key(4n)))?.entries, TREE["a/b"]);
  deepStrictEqual((await ahead.take(key(8n)))?.entries, []);
  equal(rpc.paramsOf("walk").length, 1, "one round trip for three directories");
  // Opened again in its time (find returning to a parent): served again, no walk.
  deepStrictEqual((await ahead.take(key(4n)))?.entries, TREE["a/b"]);
  equal(rpc.paramsOf("walk").length, 1);
  equal(await ahead.take("8:99:10"), undefined);
  equal(ahead.target(key(6n)), "../f", "a symlink's target came along");
});

Deno.test("subtree: what an answer did not reach is walked next, and a wanted one at once", async () => {
  const tree: Tree = {
    "a": [dir("b", 4n), dir("c", 5n)],
    "a/b": [dir("d", 6n)],
    "a/b/d": [file("x", 7n)],
    "a/c": [file("y", 8n)],
  };
  const { rpc, ahead } = setup(tree, { inFlight: 1 }, 2); // two directories per answer
  ahead.queue(ROOT_KEY, "", [dir("a", 3n)]);
  deepStrictEqual((await ahead.take(key(3n)))?.entries, tree["a"]);
  await tick();
  // a and a/b came first; a/b/d and a/c were queued (a/b/d, first in walk order, on top).
  deepStrictEqual(rpc.paramsOf("walk").map((p) => p.paths), [["a"], ["a/b/d", "a/c"]]);
  deepStrictEqual((await ahead.take(key(5n)))?.entries, tree["a/c"]);
  deepStrictEqual((await ahead.take(key(6n)))?.entries, tree["a/b/d"]);
});

Deno.test("subtree: listings and targets older than their time do not serve", async () => {
  const { rpc, ahead, clock } = setup(TREE);
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  await tick();
  assert(ahead.size > 0);
  clock.now += 1000;
  equal(ahead.target(key(6n)), undefined);
  equal(ahead.dirStat("a/b"), undefined);
  // Known but stale: walked again with its (stale) subtree, not served.
  const walks = rpc.paramsOf("walk").length;
  deepStrictEqual((await ahead.take(key(4n)))?.at, clock.now);
  deepStrictEqual(rpc.paramsOf("walk")[walks].paths, ["a/b"]);
  deepStrictEqual(rpc.paramsOf("walk")[walks].maxEntries, 1024);
  // Taken: within its time it is served again without a walk.
  const before = rpc.paramsOf("walk").length;
  assert(await ahead.take(key(4n)));
  equal(rpc.paramsOf("walk").length, before);
  equal(await ahead.take("8:1:77"), undefined, "never seen: not walked");
});

Deno.test("subtree: a walked directory answers for itself; one replaced meanwhile is not kept", async () => {
  const { rpc, ahead } = setup(TREE);
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  await tick();
  equal(ahead.dirStat("a/b")?.ino, 4n);
  ahead.drop();
  equal(ahead.dirStat("a/b"), undefined);
  // Another directory at "a" now: its walk is not taken for the one listed before.
  rpc.on(
    "walk",
    (p) =>
      ok({
        dirs: [{ path: p.paths[0], self: fakeStat({ ino: 99n, mode: S_IFDIR }), entries: [] }],
        walked: 1,
      }),
  );
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  equal(await ahead.take(key(3n)), undefined);
});

Deno.test("subtree: a change during a walk discards its answer; drop() forgets everything", async () => {
  const { rpc, ahead, changes } = setup(TREE);
  const answer = deferred<WalkResult>();
  rpc.on("walk", () => answer.promise);
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  changes.note();
  ahead.drop();
  answer.resolve(walker(TREE)({ paths: ["a"], maxEntries: 100, maxBytes: 1 << 20 }));
  await tick();
  equal(ahead.target(key(6n)), undefined);
  equal(ahead.size, 0, "the answer was not kept");
  // Fetched fine, then dropped.
  rpc.on("walk", walker(TREE));
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  await tick();
  assert(ahead.size > 0);
  ahead.drop();
  equal(ahead.target(key(6n)), undefined);
  const walks = rpc.paramsOf("walk").length;
  assert(await ahead.take(key(4n)));
  equal(rpc.paramsOf("walk").length, walks + 1, "walked again, not served from before the drop");
});

Deno.test("subtree: no walk while unused listings fill the buffer", async () => {
  const tree: Tree = {};
  const top = [];
  for (let i = 0; i < 10; i++) {
    top.push(dir(`d${i}`, BigInt(100 + i)));
    tree[`d${i}`] = [file("a", BigInt(200 + 2 * i)), file("b", BigInt(201 + 2 * i))];
  }
  const { rpc, ahead } = setup(tree, { bufferEntries: 4, inFlight: 1 }, 1);
  ahead.queue(ROOT_KEY, "", top);
  for (let i = 0; i < 5; i++) await tick();
  // One walk (2 entries), then another (4 ≥ the buffer): nothing more until one is taken.
  equal(rpc.paramsOf("walk").length, 2);
  assert(await ahead.take(key(100n)));
  for (let i = 0; i < 5; i++) await tick();
  equal(rpc.paramsOf("walk").length, 3);
});

Deno.test("subtree: more walks in flight when the round trip is long", async () => {
  const { rpc, ahead, clock } = setup(TREE);
  equal(ahead.inFlight, 2);
  const answer = deferred<WalkResult>();
  rpc.on("walk", () => answer.promise);
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  clock.now += 100; // a 100 ms round trip
  answer.resolve(walker(TREE)({ paths: ["a"], maxEntries: 100, maxBytes: 1 << 20 }));
  await tick();
  equal(ahead.inFlight, 7);
});

Deno.test("subtree: walks ask for the time slice given, none by default", async () => {
  const near = setup(TREE, { sliceMs: 10 });
  near.ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  await tick();
  deepStrictEqual(near.rpc.paramsOf("walk").map((p) => p.maxMs), [10]);
  const far = setup(TREE);
  far.ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  await tick();
  deepStrictEqual(far.rpc.paramsOf("walk").map((p) => p.maxMs), [undefined]);
});

Deno.test("subtree: past their time, what the feed vouches for serves again without a walk", async () => {
  const watched = new Set([key(3n), key(4n), key(8n)]);
  const { rpc, ahead, clock } = setup(TREE, { vouched: (k) => watched.has(k) });
  ahead.queue(ROOT_KEY, "", ROOT_LISTING);
  for (const ino of [3n, 4n, 8n]) await ahead.take(key(ino));
  const walks = rpc.paramsOf("walk").length;
  clock.now += 60_000;
  // A warm walk: the listings taken before serve again, as current as now; no walk is asked.
  const again = await ahead.take(key(4n));
  deepStrictEqual([again?.entries, again?.at], [TREE["a/b"], clock.now]);
  ahead.queue(key(3n), "a", TREE["a"]);
  await tick();
  equal(rpc.paramsOf("walk").length, walks, "nothing walked again");
  equal(ahead.target(key(6n)), "../f");
  deepStrictEqual(ahead.dirStat("a/b")?.ino, 4n);
  // No longer watched: past its time, walked again.
  watched.delete(key(8n));
  equal(ahead.target(key(6n)), "../f");
  deepStrictEqual((await ahead.take(key(8n)))?.entries, []);
  equal(rpc.paramsOf("walk").length, walks + 1);
  // Any change drops all of it, vouched or not.
  ahead.drop();
  equal(ahead.target(key(6n)), undefined);
  await ahead.take(key(4n));
  equal(rpc.paramsOf("walk").length, walks + 2);
});

Deno.test("subtree: a whole opendir listing serves the next opendir within its time only", async () => {
  const { rpc, ahead, clock } = setup(TREE, { vouched: () => true });
  ahead.queue(key(3n), "a", TREE["a"], clock.now);
  deepStrictEqual((await ahead.take(key(3n)))?.entries, TREE["a"]);
  const walks = rpc.paramsOf("walk").filter((p) => p.paths.includes("a")).length;
  equal(walks, 0, "served from the opendir's listing");
  // Past its time it has no symlink targets to offer: walked again, even while vouched for.
  clock.now += 1000;
  await ahead.take(key(3n));
  equal(rpc.paramsOf("walk").filter((p) => p.paths.includes("a")).length, 1);
  equal(ahead.target(key(6n)), "../f");
});

Deno.test("subtree: a listing made for lookups walks nothing until a subdirectory is opened", async () => {
  const { rpc, ahead } = setup(TREE);
  ahead.queue(ROOT_KEY, "", ROOT_LISTING, undefined, false);
  await tick();
  equal(rpc.paramsOf("walk").length, 0, "no walk ahead of the lookups");
  equal(ahead.holds(key(3n)), false);
  // Opened later (a traversal begins there): walked then, with its subtree, in one answer.
  deepStrictEqual((await ahead.take(key(3n)))?.entries, TREE["a"]);
  deepStrictEqual(rpc.paramsOf("walk").map((p) => p.paths), [["a"]]);
  deepStrictEqual((await ahead.take(key(4n)))?.entries, TREE["a/b"]);
  equal(rpc.paramsOf("walk").length, 1);
});
