import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { AttrCache, type AttrCacheOptions } from "./attr_cache.ts";
import { statToAttr } from "./checks.ts";
import { fakeStat } from "./_fake_rpc.ts";

function cache(
  options: Partial<AttrCacheOptions> = {},
): { cache: AttrCache; clock: { now: number } } {
  const clock = { now: 1000 };
  return {
    cache: new AttrCache({ attrTtlMs: 1000, listedTtlMs: 500, now: () => clock.now, ...options }),
    clock,
  };
}

Deno.test("attr cache: 'no xattrs' holds for the attribute timeout, then expires", () => {
  const { cache: c, clock } = cache();
  assertEquals(c.noXattrs("k"), "unknown");
  c.noteXattrs("k", false);
  assertEquals(c.noXattrs("k"), "yes");
  clock.now += 1000;
  assertEquals(c.noXattrs("k"), "expired");
  c.noteXattrs("k", true);
  assertEquals(c.noXattrs("k"), "unknown");
  c.noteXattrs("k", false);
  c.forgetXattrs("k");
  assertEquals(c.noXattrs("k"), "unknown");
  c.noteXattrs("k", undefined);
  assertEquals(c.noXattrs("k"), "unknown");
});

Deno.test("attr cache: without an attribute timeout nothing is trusted", () => {
  const { cache: c } = cache({ attrTtlMs: 0, listedTtlMs: 0 });
  c.noteXattrs("k", false);
  c.noteListed("d", "n", fakeStat(), 1000);
  c.noteChangedDir("d", statToAttr(fakeStat()));
  assertEquals([c.noXattrs("k"), c.takeListed("d", "n"), c.takeChangedDir("d")], [
    "unknown",
    undefined,
    undefined,
  ]);
});

Deno.test("attr cache: a listed name answers one LOOKUP within its time", () => {
  const { cache: c, clock } = cache();
  const stat = fakeStat();
  c.noteListed("d", "n", stat, clock.now);
  assertEquals(c.takeListed("d", "n"), stat);
  assertEquals(c.takeListed("d", "n"), undefined, "used once");
  c.noteListed("d", "n", stat, clock.now);
  clock.now += 500;
  assertEquals(c.takeListed("d", "n"), undefined, "expired");
  c.noteListed("d", "n", stat, clock.now);
  c.forgetListed("d", "n");
  assertEquals(c.takeListed("d", "n"), undefined, "forgotten at a change");
});

Deno.test("attr cache: listed names and changed directories have their own bounds", () => {
  const { cache: c, clock } = cache({ limits: { listed: 1, changedDirs: 1 } });
  c.noteListed("d", "a", fakeStat(), clock.now);
  c.noteListed("d", "b", fakeStat(), clock.now);
  c.noteChangedDir("x", statToAttr(fakeStat()));
  c.noteChangedDir("y", statToAttr(fakeStat()));
  assertEquals(c.takeListed("d", "a"), undefined);
  assertEquals(c.takeListed("d", "b")?.ino, 100n);
  assertEquals(c.takeChangedDir("x"), undefined);
  assertEquals(c.takeChangedDir("y")?.ino, 100n);
});

Deno.test("attr cache: a changed directory's attributes answer one GETATTR within the timeout", () => {
  const { cache: c, clock } = cache();
  const attr = statToAttr(fakeStat());
  c.noteChangedDir("d", attr);
  assertEquals(c.takeChangedDir("d"), attr);
  assertEquals(c.takeChangedDir("d"), undefined);
  c.noteChangedDir("d", attr);
  c.noteChangedDir("d", undefined);
  assertEquals(c.takeChangedDir("d"), undefined, "unknown attributes forget older ones");
  c.noteChangedDir("d", attr);
  clock.now += 1000;
  assertEquals(c.takeChangedDir("d"), undefined);
});
