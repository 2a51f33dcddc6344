// Where the change feed cannot vouch: 10,000 files created at once inside the container (the
// kernel's event queue may overflow: everything cached is dropped) and a watch limit set low
// (directories beyond it keep the short timeouts). Both end in correct listings, never stale
// ones: the mount shows exactly what the container has within the short timeout (1 s) plus a
// margin for the 2 busy cores.

import { deepStrictEqual, ok } from "node:assert/strict";
import { lstatOrNone, names, until, withContainer } from "./helpers.ts";

Deno.test("live: 10,000 files created at once end in a correct listing", async () => {
  await withContainer("overflow", ["--debug"], async (mnt, inside, stderr) => {
    await inside.run("mkdir -p /o && touch /o/before");
    ok(await until(async () => (await lstatOrNone(`${mnt}/o/before`)) !== undefined) < 5000);
    deepStrictEqual(await names(`${mnt}/o`), ["before"]); // cached, and watched
    // The satellite is stopped meanwhile, so the kernel's queue (16,384 events) overflows.
    const pid = /Satellite ready .*pid (\d+)/.exec(stderr())?.[1];
    ok(pid !== undefined, "the satellite's pid is logged");
    await inside.run(
      `kill -STOP ${pid} && cd /o && seq 1 10000 | xargs touch && rm before; kill -CONT ${pid}`,
      120_000,
    );
    const want = Array.from({ length: 10000 }, (_, i) => String(i + 1)).sort();
    let last: string[] = [];
    const ms = await until(async () => {
      last = await names(`${mnt}/o`);
      return last.length === want.length && last.every((n, i) => n === want[i]);
    }, 10_000);
    ok(ms < 10_000, `listing still has ${last.length} names after 10 s`);
    // Never stale afterwards either.
    deepStrictEqual(await names(`${mnt}/o`), want);
    ok(stderr().includes("event queue overflowed"), "the overflow was noticed");
    console.log(`10,000 files: listing correct ${ms.toFixed(0)} ms after the command returned`);
  });
});

Deno.test("live: beyond a low watch limit directories keep short timeouts and stay correct", async () => {
  await withContainer("limit", ["--debug", "-o", "max_watches=2"], async (mnt, inside, err) => {
    // The root and /w are watched; /w/a and /w/b are beyond the limit.
    await inside.run("mkdir -p /w/a /w/b && echo 1 > /w/a/f && echo 1 > /w/b/f");
    ok(await until(async () => (await lstatOrNone(`${mnt}/w/b/f`)) !== undefined) < 5000);
    for (const dir of ["a", "b"]) {
      deepStrictEqual(await names(`${mnt}/w/${dir}`), ["f"]);
      await Deno.readTextFile(`${mnt}/w/${dir}/f`);
    }
    await inside.run("echo 22 > /w/a/f && touch /w/a/g && rm /w/b/f && echo 3 > /w/b/h");
    // Unwatched: visible after the short timeouts (1 s), never longer.
    const ms = await until(async () =>
      JSON.stringify(await names(`${mnt}/w/a`)) === '["f","g"]' &&
      JSON.stringify(await names(`${mnt}/w/b`)) === '["h"]' &&
      (await Deno.readTextFile(`${mnt}/w/a/f`)) === "22\n", 5000);
    ok(ms < 2500, `changes in unwatched directories took ${ms} ms`);
    ok(err().includes("the watch limit (2) reached"), "the limit applied");
    console.log(`beyond the watch limit: visible after ${ms.toFixed(0)} ms (short timeouts)`);
  });
});

Deno.test("live: changes made while the satellite was away show once it is back", async () => {
  await withContainer("gap", [], async (mnt, inside, stderr) => {
    await inside.run("mkdir -p /g && echo old > /g/f");
    ok(await until(async () => (await lstatOrNone(`${mnt}/g/f`)) !== undefined) < 5000);
    // Cached with the feed's long timeouts: the listing, the file's attributes and pages.
    deepStrictEqual(await names(`${mnt}/g`), ["f"]);
    await Deno.readTextFile(`${mnt}/g/f`);
    const pid = /Satellite ready .*pid (\d+)/.exec(stderr())?.[1];
    ok(pid !== undefined, "the satellite's pid is logged");
    // Killed, and the changes made before the new one starts: no event tells them.
    await inside.run(`kill -9 ${pid}; echo newer > /g/f; touch /g/added`);
    ok(
      await until(() => stderr().includes("Reconnected to"), 20_000) < 20_000,
      "reconnected",
    );
    const ms = await until(
      async () =>
        JSON.stringify(await names(`${mnt}/g`)) === '["added","f"]' &&
        (await Deno.readTextFile(`${mnt}/g/f`)) === "newer\n",
      5000,
    );
    ok(ms < 1000, `the gap's changes showed ${ms} ms after reconnecting`);
  });
});
