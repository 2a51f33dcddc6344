import { deepStrictEqual } from "node:assert/strict";
import { DT_DIR, DT_REG, S_IFDIR } from "../linux/mod.ts";
import type { DirEntry as WireDirEntry } from "../protocol/mod.ts";
import { ListAhead, type ListAheadOptions } from "./list_ahead.ts";
import { MountChanges } from "./mount_changes.ts";
import { deferred, fail, FakeRpc, fakeStat, ok } from "./_fake_rpc.ts";

const DIR_KEY = "8:1:2";

function dir(name: string, ino: bigint, devMinor = 1): WireDirEntry {
  return {
    name,
    ino,
    type: DT_DIR,
    offset: ino,
    stat: fakeStat({ ino, mode: S_IFDIR | 0o755, devMinor }),
  };
}

const listing = [{ name: "x", ino: 50n, type: DT_REG, offset: 1n, stat: fakeStat({ ino: 50n }) }];

function setup(
  options: Partial<ListAheadOptions> = {},
): { rpc: FakeRpc; ahead: ListAhead; changes: MountChanges; clock: { now: number } } {
  const rpc = new FakeRpc();
  let next = 10;
  rpc.on("opendir", () => ok({ handle: next++, entries: listing, eof: true }));
  rpc.on("release", () => ok(null));
  const changes = new MountChanges();
  const clock = { now: 1000 };
  const ahead = new ListAhead(rpc.call, changes, {
    ttlMs: 1000,
    batch: 16,
    now: () => clock.now,
    ...options,
  });
  return { rpc, ahead, changes, clock };
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

Deno.test("list ahead: subdirectories on the same device are listed, and serve once", async () => {
  const { rpc, ahead } = setup();
  ahead.queue(DIR_KEY, "p", [
    { name: ".", ino: 2n, type: DT_DIR, offset: 1n },
    dir("a", 3n),
    { name: "f", ino: 4n, type: DT_REG, offset: 4n, stat: fakeStat({ ino: 4n }) },
    dir("mnt", 5n, 99), // another filesystem: a mount point
  ]);
  deepStrictEqual((await ahead.take("8:1:3"))?.entries, listing);
  deepStrictEqual(rpc.paramsOf("opendir"), [{ path: "p/a", readAhead: 16 }]);
  deepStrictEqual(rpc.paramsOf("release"), [{ handle: 10 }], "the satellite's handle is closed");
  deepStrictEqual(await ahead.take("8:1:3"), undefined, "used once");
  deepStrictEqual(await ahead.take("8:99:5"), undefined);
});

Deno.test("list ahead: a listing older than its time does not serve", async () => {
  const { ahead, clock } = setup();
  ahead.queue(DIR_KEY, "", [dir("a", 3n)]);
  await tick();
  clock.now += 1000;
  deepStrictEqual(await ahead.take("8:1:3"), undefined);
});

Deno.test("list ahead: a change during the fetch discards the listing; drop() forgets the queue", async () => {
  const { rpc, ahead, changes } = setup({ inFlight: 1 });
  const answer = deferred<
    ReturnType<typeof ok<{ handle: number; eof: boolean; entries: typeof listing }>>
  >();
  rpc.on("opendir", () => answer.promise);
  ahead.queue(DIR_KEY, "", [dir("a", 3n), dir("b", 4n)]);
  changes.note();
  ahead.drop();
  deepStrictEqual(ahead.size, 0);
  answer.resolve(ok({ handle: 7, eof: true, entries: listing }));
  deepStrictEqual(await ahead.take("8:1:3"), undefined);
  await tick();
  deepStrictEqual(rpc.methods(), ["opendir", "release"], "b was never fetched");
});

Deno.test("list ahead: a change noted while fetching, without drop, still discards it", async () => {
  const { rpc, ahead, changes } = setup();
  const answer = deferred<
    ReturnType<typeof ok<{ handle: number; eof: boolean; entries: typeof listing }>>
  >();
  rpc.on("opendir", () => answer.promise);
  ahead.queue(DIR_KEY, "", [dir("a", 3n)]);
  changes.note();
  answer.resolve(ok({ handle: 7, eof: true, entries: listing }));
  deepStrictEqual(await ahead.take("8:1:3"), undefined);
});

Deno.test("list ahead: partial listings and failures are not kept", async () => {
  const { rpc, ahead } = setup();
  rpc.on(
    "opendir",
    (p) => p.path === "a" ? ok({ handle: 7, eof: false, entries: listing }) : fail("EACCES"),
  );
  ahead.queue(DIR_KEY, "", [dir("a", 3n), dir("b", 4n)]);
  deepStrictEqual(await ahead.take("8:1:3"), undefined);
  deepStrictEqual(await ahead.take("8:1:4"), undefined);
  deepStrictEqual(ahead.size, 0);
});

Deno.test("list ahead: at most inFlight fetches at once and queueLimit directories", async () => {
  const { rpc, ahead } = setup({ inFlight: 2, queueLimit: 3 });
  const answers: ((
    v: ReturnType<typeof ok<{ handle: number; eof: boolean; entries: typeof listing }>>,
  ) => void)[] = [];
  rpc.on("opendir", () => {
    const d = deferred<
      ReturnType<typeof ok<{ handle: number; eof: boolean; entries: typeof listing }>>
    >();
    answers.push(d.resolve);
    return d.promise;
  });
  ahead.queue(DIR_KEY, "", [dir("a", 3n), dir("b", 4n), dir("c", 5n), dir("d", 6n)]);
  deepStrictEqual(ahead.size, 3);
  deepStrictEqual(rpc.methods(), ["opendir", "opendir"]);
  answers[0](ok({ handle: 1, eof: true, entries: listing }));
  await tick();
  deepStrictEqual(rpc.paramsOf("opendir").map((p) => p.path), ["a", "b", "c"]);
  for (const answer of answers.slice(1)) answer(ok({ handle: 2, eof: true, entries: listing }));
});

Deno.test("list ahead: names or stats that fail the checks are never walked into", async () => {
  const { rpc, ahead } = setup();
  ahead.queue(DIR_KEY, "", [
    dir("a/b", 3n),
    dir("..", 4n),
    { ...dir("c", 5n), stat: fakeStat({ ino: 5n, mode: 0o170755 }) },
  ]);
  await tick();
  deepStrictEqual(rpc.calls, []);
});

Deno.test("list ahead: nothing is listed without a time to serve", async () => {
  const { rpc, ahead } = setup({ ttlMs: 0 });
  ahead.queue(DIR_KEY, "", [dir("a", 3n)]);
  await tick();
  deepStrictEqual([rpc.calls, ahead.size], [[], 0]);
});
