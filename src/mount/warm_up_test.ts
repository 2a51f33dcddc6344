// The client's warm-up: the real client layers walk the stand-in's whole tree, quietly, in each
// round, and end when told.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import type { Logger } from "../fuse/mod.ts";
import { layerOptions, mountOptions } from "./options.ts";
import { WARM_UP_ROUNDS, warmUpClient, warmUpWhenIdle } from "./warm_up.ts";

/** A logger that keeps every line. */
function recording(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const keep = (m: string): void => void lines.push(m);
  return { lines, debug: keep, info: keep, warn: keep, error: keep };
}

function layers(changes: Parameters<typeof mountOptions>[2] = {}, logger = recording()) {
  return layerOptions(mountOptions("web", "/mnt", changes), {
    fsName: "dockerfuse:web",
    hostArch: "x86_64",
    remoteEngine: false,
    logger,
  });
}

// The stand-in's tree: the top, 6 directories of 240 files, 10 symlinks and a subdirectory of 40.
const DIRS = 1 + 6 + 6;
const ENTRIES = 6 + 6 * (240 + 10 + 1) + 6 * 40;

Deno.test("client warm-up: every round walks the whole tree through the client layers, quietly", async () => {
  const logger = recording();
  const rounds = await warmUpClient(layers({}, logger), logger);
  equal(rounds.length, WARM_UP_ROUNDS);
  for (const r of rounds) {
    deepStrictEqual([r.dirs, r.entries], [DIRS, ENTRIES]);
    ok(r.requests > 2 * DIRS, `${r.requests} requests`);
    // As in a mount with the change feed: what the feed vouches for has its long timeout.
    equal(r.attrValid, 60);
  }
  deepStrictEqual(logger.lines, []);
});

Deno.test("client warm-up: the same with the change feed off, caching and timeouts changed", async () => {
  const logger = recording();
  const options = { watch: false, attrTimeout: 5, entryTimeout: 0, writebackCache: true };
  const rounds = await warmUpClient(layers(options, logger), logger, {}, 1);
  deepStrictEqual(rounds.map((r) => [r.dirs, r.entries, r.attrValid]), [[DIRS, ENTRIES, 5]]);
  deepStrictEqual(logger.lines, []);
});

Deno.test("client warm-up: ends within a request of being told to stop", async () => {
  let asked = 0;
  const rounds = await warmUpClient(layers(), recording(), { stop: () => ++asked > 20 });
  equal(rounds.length, 1);
  ok(rounds[0].dirs < DIRS, `listed ${rounds[0].dirs}`);
});

Deno.test("client warm-up: starts only once the mount had no request for the idle time", async () => {
  const fuse = { requests: 0 };
  const busy = setInterval(() => fuse.requests++, 5);
  const started = performance.now();
  const warmed = warmUpWhenIdle(fuse, layers(), recording(), new AbortController().signal, 30);
  await new Promise((r) => setTimeout(r, 120));
  clearInterval(busy);
  const rounds = await warmed;
  ok(performance.now() - started >= 120 + 30, "began while requests came");
  equal(rounds.length, WARM_UP_ROUNDS);
});

Deno.test("client warm-up: a request ends it, and so does the end of the mount", async () => {
  const fuse = { requests: 0 };
  const warmed = warmUpWhenIdle(fuse, layers(), recording(), new AbortController().signal, 10);
  await new Promise((r) => setTimeout(r, 30));
  fuse.requests++;
  const rounds = await warmed;
  ok(rounds.length < WARM_UP_ROUNDS, `${rounds.length} rounds`);
  const ended = new AbortController();
  ended.abort();
  deepStrictEqual(
    await warmUpWhenIdle({ requests: 0 }, layers(), recording(), ended.signal, 10),
    [],
  );
});
