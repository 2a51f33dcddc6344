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

Deno.test("queries sent after walks are served first; a change waits for them", async () => {
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
      "walk", // …which are served before the change sent after them,
      "walk",
      "mkdir",
      "lstat", // and the walk sent after the change waits for the query behind it.
      "walk",
    ]);
    const listed = (r: typeof results[0]) => (r.ok ? (r.value as { dirs: WalkDir[] }).dirs : []);
    ok(!names(listed(results[0])[0]).includes("new"));
    ok(names(listed(results[6])[0]).includes("new"), "the walk after the change sees it");
    valueOf(await c.release({ handle: valueOf(await opened).handle }));

    // A truncating open is a change: the walk before it is served first.
    h.calls.length = 0;
    const w = walk("t3");
    const trunc = c.open({ path: "file", flags: 0o1001 }); // O_WRONLY | O_TRUNC
    valueOf(await w);
    valueOf(await c.release({ handle: valueOf(await trunc).handle }));
    deepStrictEqual(h.calls, ["walk", "open", "release"]);
  } finally {
    equal(await h.stop(), 0);
    await Deno.remove(root, { recursive: true });
  }
});
