import { deepStrictEqual, equal, ok, rejects } from "node:assert/strict";
import { AttachBusyError, AttachManager, type Attachment, type DetachReason } from "./attach.ts";

/** Attachments that record their life, and a timer the test fires by hand. */
function setup(max: number) {
  const live = new Set<string>();
  const opened: string[] = [];
  const detached: [string, DetachReason][] = [];
  const timers = new Map<number, () => void>();
  let nextTimer = 0;
  const manager = new AttachManager<string>({
    idleMs: 1000,
    max,
    onDetach: (key, reason) => detached.push([key, reason]),
    schedule: (fn) => {
      const id = nextTimer++;
      timers.set(id, fn);
      return () => timers.delete(id);
    },
  });
  const open = (key: string) => (): Promise<Attachment<string>> => {
    opened.push(key);
    live.add(key);
    let end!: () => void;
    const ended = new Promise<void>((resolve) => end = resolve);
    return Promise.resolve({
      fs: `fs:${key}`,
      ended,
      close: () => {
        live.delete(key);
        end();
        return Promise.resolve();
      },
    });
  };
  const fireTimers = (): void => {
    const due = [...timers.values()];
    timers.clear();
    for (const fn of due) fn();
  };
  return { manager, live, opened, detached, open, fireTimers, timers };
}

Deno.test("attach: a key is opened once and shared by concurrent leases", async () => {
  const t = setup(2);
  const [a, b] = await Promise.all([
    t.manager.acquire("x", t.open("x")),
    t.manager.acquire("x", t.open("x")),
  ]);
  deepStrictEqual(t.opened, ["x"]);
  equal(a.attachment, b.attachment);
  equal(a.attachment.fs, "fs:x");
  a.release();
  b.release();
});

Deno.test("attach: never more than max; the least recently used idle one is detached", async () => {
  const t = setup(2);
  for (const key of ["a", "b", "a", "c", "d", "a"]) {
    const lease = await t.manager.acquire(key, t.open(key));
    ok(t.live.size <= 2, `${t.live.size} attached after ${key}`);
    lease.release();
  }
  equal(t.manager.peak, 2);
  // "b" was least recently used when "c" came; then "a" (used before "c") when "d" came.
  deepStrictEqual(t.detached, [["b", "lru"], ["a", "lru"], ["c", "lru"]]);
  deepStrictEqual(t.opened, ["a", "b", "c", "d", "a"]);
});

Deno.test("attach: a request lease is waited for, an open file's lease makes it busy", async () => {
  const t = setup(1);
  const held = await t.manager.acquire("a", t.open("a"));
  let gotB = false;
  const b = t.manager.acquire("b", t.open("b")).then((lease) => {
    gotB = true;
    return lease;
  });
  await new Promise((resolve) => setTimeout(resolve, 0));
  equal(gotB, false, "b must wait while a is in use");
  held.release();
  const leaseB = await b;
  deepStrictEqual([...t.live], ["b"]);
  leaseB.release();
  const file = await t.manager.acquire("b", t.open("b"), true);
  await rejects(t.manager.acquire("c", t.open("c")), AttachBusyError);
  file.release();
});

Deno.test("attach: idle detach only once every lease is released", async () => {
  const t = setup(4);
  const one = await t.manager.acquire("a", t.open("a"));
  const two = await t.manager.acquire("a", t.open("a"));
  one.release();
  equal(t.timers.size, 0, "no idle timer while a lease is held");
  two.release();
  equal(t.timers.size, 1);
  const again = await t.manager.acquire("a", t.open("a"));
  equal(t.timers.size, 0, "a new lease cancels the idle timer");
  again.release();
  t.fireTimers();
  await new Promise((resolve) => setTimeout(resolve, 0));
  deepStrictEqual(t.detached, [["a", "idle"]]);
  equal(t.live.size, 0);
  equal(t.manager.attached("a"), false);
});

Deno.test("attach: detach(key) ends leases; closeAll detaches everything", async () => {
  const t = setup(4);
  const a = await t.manager.acquire("a", t.open("a"), true);
  const b = await t.manager.acquire("b", t.open("b"));
  await t.manager.detach("a");
  equal(a.alive, false);
  equal(b.alive, true);
  await t.manager.closeAll();
  equal(b.alive, false);
  equal(t.live.size, 0);
  await rejects(t.manager.acquire("c", t.open("c")));
});

Deno.test("attach: a failed open leaves no slot and is retried by the next acquire", async () => {
  const t = setup(1);
  await rejects(
    t.manager.acquire("a", () => Promise.reject(new Error("no satellite"))),
    /no satellite/,
  );
  deepStrictEqual(t.manager.keys, []);
  const lease = await t.manager.acquire("a", t.open("a"));
  equal(lease.attachment.fs, "fs:a");
  lease.release();
});

Deno.test("attach: an attachment that ends by itself is forgotten", async () => {
  const t = setup(2);
  const lease = await t.manager.acquire("a", t.open("a"));
  await lease.attachment.close(); // as if the satellite died
  await new Promise((resolve) => setTimeout(resolve, 0));
  equal(lease.alive, false);
  deepStrictEqual(t.detached, [["a", "lost"]]);
  lease.release();
});
