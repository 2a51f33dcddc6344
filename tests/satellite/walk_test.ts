// The `walk` method against a real satellite over pipes: subtrees depth first, whole
// directories, symlink targets, budgets, and never into another filesystem.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { DT_DIR, DT_LNK } from "../../src/linux/mod.ts";
import type { WalkDir } from "../../src/protocol/mod.ts";
import { startSatellite, valueOf } from "./harness.ts";

function names(dir: WalkDir): string[] {
  return dir.entries.map((e) => String(e.name)).filter((n) => n !== "." && n !== "..").sort();
}

Deno.test("walk lists subtrees depth first, with symlink targets, within its budget", async () => {
  const root = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dfwalk-" });
  for (const d of ["a/b/c", "a/d", "e"]) await Deno.mkdir(`${root}/${d}`, { recursive: true });
  for (let i = 0; i < 20; i++) await Deno.writeTextFile(`${root}/e/f${i}`, "x");
  await Deno.writeTextFile(`${root}/a/b/file`, "hello");
  await Deno.symlink("../file-target", `${root}/a/b/link`);
  await Deno.symlink("/abs/elsewhere", `${root}/a/abs`);
  const h = startSatellite(root);
  const c = h.client.call;
  try {
    const all = valueOf(await c.walk({ paths: ["a", "e"], maxEntries: 1000, maxBytes: 1 << 20 }));
    equal(all.walked, 2);
    deepStrictEqual(
      new Set(all.dirs.map((d) => d.path)),
      new Set(["a", "a/b", "a/b/c", "a/d", "e"]),
    );
    // Depth first: a/b's subtree comes right after a/b, before a/d when a/b is listed first.
    const order = all.dirs.map((d) => d.path);
    ok(order.indexOf("a/b/c") === order.indexOf("a/b") + 1);
    const ab = all.dirs.find((d) => d.path === "a/b")!;
    deepStrictEqual(names(ab), ["c", "file", "link"]);
    const link = ab.entries.find((e) => e.name === "link")!;
    equal(link.type, DT_LNK);
    equal(link.target, "../file-target");
    ok(link.stat !== undefined);
    equal(ab.entries.find((e) => e.name === "c")!.type, DT_DIR);
    equal(
      all.dirs.find((d) => d.path === "a")!.entries.find((e) => e.name === "abs")!.target,
      "/abs/elsewhere",
    );

    // A small budget ends the answer after whole directories; the first always fits.
    const small = valueOf(await c.walk({ paths: ["e", "a"], maxEntries: 5, maxBytes: 1 << 20 }));
    deepStrictEqual(small.dirs.map((d) => d.path), ["e"]);
    equal(small.dirs[0].entries.length, 22, "the whole directory, . and .. included");
    equal(small.walked, 0, "the budget ran out: the client asks again for what is left");
    const rest = valueOf(
      await c.walk({ paths: ["a/d", "a/b/c"], maxEntries: 5, maxBytes: 1 << 20 }),
    );
    equal(rest.walked, 2);

    // Paths that cannot be opened (absent, a file, a symlink) are passed over.
    const bad = valueOf(
      await c.walk({
        paths: ["nope", "a/b/file", "a/b/link", "a/d"],
        maxEntries: 100,
        maxBytes: 1 << 20,
      }),
    );
    equal(bad.walked, 4);
    deepStrictEqual(bad.dirs.map((d) => d.path), ["a/d"]);
    const escape = await c.walk({ paths: ["../x"], maxEntries: 100, maxBytes: 1 << 20 });
    ok(escape.ok && escape.value.dirs.length === 0);
  } finally {
    equal(await h.stop(), 0);
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("walk never enters another filesystem", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfwalk-dev-" });
  await Deno.mkdir(`${root}/d/mnt`, { recursive: true });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "tmpfs", `${root}/d/mnt`],
  }).output();
  ok(mount.success, "mounting a tmpfs (needs root)");
  await Deno.mkdir(`${root}/d/mnt/inside`);
  const h = startSatellite(root);
  try {
    const r = valueOf(
      await h.client.call.walk({ paths: [""], maxEntries: 100, maxBytes: 1 << 20 }),
    );
    deepStrictEqual(r.dirs.map((d) => d.path), ["", "d"]);
    ok(r.dirs[1].entries.some((e) => e.name === "mnt"), "the mount point is listed…");
    ok(!r.dirs.some((d) => String(d.path).startsWith("d/mnt")), "…not walked into");
  } finally {
    equal(await h.stop(), 0);
    await new Deno.Command("umount", { args: [`${root}/d/mnt`] }).output();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("queries sent after walks are served first; a change waits for them, a change of names answers them empty", async () => {
  const root = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dfwalk-order-" });
  for (let d = 0; d < 4; d++) {
    await Deno.mkdir(`${root}/t${d}`);
    for (let i = 0; i < 50; i++) await Deno.writeTextFile(`${root}/t${d}/f${i}`, "x");
  }
  await Deno.writeTextFile(`${root}/file`, "hello");
  const h = startSatellite(root);
  const c = h.client.call;
  try {
    await h.client.ready;
    h.calls.length = 0;
    // Sent in one turn: one write, read by the satellite at once.
    const walk = (path: string) => c.walk({ paths: [path], maxEntries: 4096, maxBytes: 1 << 20 });
    const first = walk("t0");
    const second = walk("t1");
    const stat = c.lstat({ path: "file" });
    const opened = c.open({ path: "file", flags: 0 });
    const statfs = c.statfs({ path: "" });
    const made = c.mkdir({ path: "t2/new", mode: 0o755 });
    const third = walk("t2");
    const after = c.lstat({ path: "t2/new" });
    const results = await Promise.all([first, second, stat, opened, statfs, made, third, after]);
    ok(results.every((r) => r.ok), JSON.stringify(results.map((r) => r.ok)));
    deepStrictEqual(h.calls, [
      "lstat", // queries overtake the walks sent before them…
      "open",
      "statfs",
      "walk", // …which a change of names sent after them answers empty, unserved,
      "walk",
      "mkdir",
      "lstat", // and the walk sent after the change waits for the query behind it.
      "walk",
    ]);
    for (const skipped of [results[0], results[1]]) {
      deepStrictEqual(valueOf(skipped), { dirs: [], walked: 0 });
    }
    const listed = (r: typeof results[0]) => (r.ok ? (r.value as { dirs: WalkDir[] }).dirs : []);
    ok(names(listed(results[6])[0]).includes("new"), "the walk after the change sees it");
    valueOf(await c.release({ handle: valueOf(await opened).handle }));

    // Any other change (a truncating open) waits for the walk before it, served first.
    h.calls.length = 0;
    const w = walk("t3");
    const trunc = c.open({ path: "file", flags: 0o1001 }); // O_WRONLY | O_TRUNC
    equal(valueOf(await w).walked, 1);
    valueOf(await c.release({ handle: valueOf(await trunc).handle }));
    deepStrictEqual(h.calls, ["walk", "open", "release"]);
  } finally {
    equal(await h.stop(), 0);
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("walk lists a directory larger than one getdents64 buffer, entry for entry", async () => {
  const root = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "dfwalk-big-" });
  // 1,500 names of 100 bytes: about 180 KiB of getdents64 output, several calls and more than
  // the listing buffer starts with; one name is not UTF-8, one a dangling symlink. `huge` has
  // more entries than a walk lists (passed over), read to over 256 KiB: not kept after.
  await Deno.mkdir(`${root}/big`);
  await Deno.mkdir(`${root}/huge`);
  const long = (i: number) => `${String(i).padStart(5, "0")}-${"x".repeat(94)}`;
  for (let i = 0; i < 1500; i++) {
    Deno.writeFileSync(`${root}/big/${long(i)}`, new Uint8Array(i % 7));
  }
  for (let i = 0; i < 4200; i++) Deno.writeFileSync(`${root}/huge/${long(i)}`, new Uint8Array());
  await Deno.symlink("nowhere", `${root}/big/dangling`);
  const raw = new Uint8Array([0x62, 0xff, 0x2e, 0x74]); // "b\xff.t"
  const h = startSatellite(root);
  const c = h.client.call;
  try {
    const path = new Uint8Array([...new TextEncoder().encode("big/"), ...raw]);
    valueOf(await c.mknod({ path, mode: 0o100600, rdevMajor: 0, rdevMinor: 0 }));
    // Twice, before and after the directory too large to list.
    for (const round of [1, 2]) {
      const walked = valueOf(
        await c.walk({ paths: ["big"], maxEntries: 4000, maxBytes: 768 * 1024 }),
      );
      const huge = valueOf(
        await c.walk({ paths: ["huge"], maxEntries: 4000, maxBytes: 768 * 1024 }),
      );
      deepStrictEqual([huge.walked, huge.dirs.length], [1, 0], "passed over");
      deepStrictEqual(walked.dirs.map((d) => d.path), ["big"], `round ${round}`);
      const entries = walked.dirs[0].entries;
      equal(entries.length, 1500 + 2 + 2, `round ${round}: every entry, . and .. included`);
      for (const e of entries) {
        if (e.name === "." || e.name === "..") continue;
        if (e.name instanceof Uint8Array) {
          deepStrictEqual(e.name, raw);
          continue;
        }
        const st = Deno.lstatSync(`${root}/big/${e.name}`);
        equal(e.ino, BigInt(st.ino!), `${e.name}: the inode`);
        equal(e.stat?.ino, BigInt(st.ino!), `${e.name}: the attributes' inode`);
        equal(e.stat?.size, BigInt(st.size), `${e.name}: the size`);
      }
      equal(new Set(entries.map((e) => e.offset)).size, entries.length, "one cookie each");
      const dangling = entries.find((e) => e.name === "dangling");
      equal(dangling?.type, DT_LNK);
      equal(dangling?.target, "nowhere");
      ok(entries.some((e) => e.name instanceof Uint8Array), "the name that is not UTF-8");
    }
  } finally {
    equal(await h.stop(), 0);
    await Deno.remove(root, { recursive: true });
  }
});
