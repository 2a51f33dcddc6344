import { deepStrictEqual } from "node:assert/strict";
import { AttrCache, type AttrCacheOptions, type ListedNames } from "./attr_cache.ts";
import type { Stat } from "../protocol/mod.ts";
import { statToAttr } from "./checks.ts";
import { fakeNode, fakeStat } from "./_fake_rpc.ts";

/** A listing showing `names` with `stat`. */
function listing(names: string[], stat: Stat = fakeStat()): ListedNames {
  return { size: names.length, statOf: (n) => names.includes(n) ? stat : undefined };
}

function cache(
  options: Partial<AttrCacheOptions> = {},
): { cache: AttrCache; clock: { now: number } } {
  const clock = { now: 1000 };
  return {
    cache: new AttrCache({ attrTtlMs: 1000, listedTtlMs: 500, now: () => clock.now, ...options }),
    clock,
  };
}

Deno.test("attr cache: a node's attributes are the last told, newer replacing older", () => {
  const { cache: c } = cache();
  const node = fakeNode("k");
  deepStrictEqual(c.attrOf(node), undefined);
  c.setAttr(node, statToAttr(fakeStat({ size: 1n })));
  c.setAttr(node, statToAttr(fakeStat({ size: 2n })));
  deepStrictEqual(c.attrOf(node)?.size, 2);
  deepStrictEqual(c.attrOf(fakeNode("k")), undefined, "kept with the node, not by key");
});

Deno.test("attr cache: extend grows a known size only", () => {
  const { cache: c } = cache();
  const node = fakeNode("k");
  c.extend(node, 10);
  deepStrictEqual(c.attrOf(node), undefined);
  c.setAttr(node, statToAttr(fakeStat({ size: 0n })));
  c.extend(node, 10);
  c.extend(node, 4);
  deepStrictEqual(c.attrOf(node)?.size, 10);
});

Deno.test("attr cache: 'no xattrs' holds for the attribute timeout, then expires", () => {
  const { cache: c, clock } = cache();
  const k = fakeNode("k");
  deepStrictEqual(c.noXattrs(k), "unknown");
  c.noteXattrs(k, false);
  deepStrictEqual(c.noXattrs(k), "yes");
  clock.now += 1000;
  deepStrictEqual(c.noXattrs(k), "expired");
  c.noteXattrs(k, true);
  deepStrictEqual(c.noXattrs(k), "unknown");
  c.noteXattrs(k, false);
  c.forgetXattrs(k);
  deepStrictEqual(c.noXattrs(k), "unknown");
  c.noteXattrs(k, undefined);
  deepStrictEqual(c.noXattrs(k), "unknown");
  // Attributes read without the probe (fstat after a write) leave "no xattrs" as it was.
  c.noteXattrs(k, false);
  c.noteXattrs(k, undefined);
  deepStrictEqual(c.noXattrs(k), "yes");
  c.forgetXattrs(k);
  // Told with the change feed's long timeout: as long as the attributes it came with.
  c.noteXattrs(k, false, 60_000);
  clock.now += 59_000;
  deepStrictEqual(c.noXattrs(k), "yes");
  clock.now += 1000;
  deepStrictEqual(c.noXattrs(k), "expired");
  // Kept with the node: another node of the same key knows nothing; `clear` forgets it.
  c.noteXattrs(k, false);
  deepStrictEqual([c.noXattrs(fakeNode("k")), c.noXattrs(k)], ["unknown", "yes"]);
  c.clear();
  deepStrictEqual(c.noXattrs(k), "unknown", "learnt from a satellite gone");
});

Deno.test("attr cache: attributes told with the long timeout are noted with their node", () => {
  const { cache: c } = cache();
  const node = fakeNode("k");
  deepStrictEqual(c.longOf(node), undefined);
  c.noteLong(node, 5, 2);
  c.setAttr(node, statToAttr(fakeStat()));
  deepStrictEqual(c.longOf(node), { seq: 5, changes: 2 });
  deepStrictEqual(c.longOf(fakeNode("k")), undefined);
});

Deno.test("attr cache: without an attribute timeout nothing is trusted", () => {
  const { cache: c } = cache({ attrTtlMs: 0, listedTtlMs: 0 });
  const k = fakeNode("k");
  c.noteXattrs(k, false);
  c.noteListed("d", listing(["n"]), 1000);
  c.noteChanged("d", statToAttr(fakeStat()), 0);
  deepStrictEqual([c.noXattrs(k), c.takeListed("d", "n")?.stat, c.takeChanged("d", 0)], [
    "unknown",
    undefined,
    undefined,
  ]);
});

Deno.test("attr cache: a listed name answers one LOOKUP within its time", () => {
  const { cache: c, clock } = cache();
  const stat = fakeStat();
  c.noteListed("d", listing(["n", "m"], stat), clock.now, 7);
  const taken = c.takeListed("d", "n");
  deepStrictEqual([taken?.stat, taken?.since], [stat, 7], "with the event it was read after");
  deepStrictEqual(c.takeListed("d", "n"), undefined, "used once");
  deepStrictEqual(c.takeListed("d", "x"), undefined, "not listed");
  deepStrictEqual(c.takeListed("e", "n"), undefined, "another directory");
  c.forgetListed("d", "m");
  deepStrictEqual(c.takeListed("d", "m"), undefined, "forgotten at a change");
  c.noteListed("d", listing(["n"], stat), clock.now);
  clock.now += 500;
  deepStrictEqual(c.takeListed("d", "n"), undefined, "expired");
  c.noteListed("d", listing(["n"], stat), clock.now);
  c.forgetListedDir("d");
  deepStrictEqual(c.takeListed("d", "n"), undefined, "the directory's listing forgotten");
});

Deno.test("attr cache: a listing noted again as it grows serves from its oldest batch", () => {
  const { cache: c, clock } = cache();
  const names = ["a"];
  const growing: ListedNames = {
    get size() {
      return names.length;
    },
    statOf: (n) => names.includes(n) ? fakeStat() : undefined,
  };
  c.noteListed("d", growing, clock.now, 3);
  clock.now += 300;
  names.push("b");
  c.noteListed("d", growing, clock.now, 9);
  deepStrictEqual(c.takeListed("d", "b")?.since, 3, "the older batch's event");
  clock.now += 200;
  deepStrictEqual(c.takeListed("d", "a"), undefined, "expired with the first batch");
});

Deno.test("attr cache: listed names and changed directories have their own bounds", () => {
  const { cache: c, clock } = cache({ limits: { listed: 2, changed: 1 } });
  c.noteListed("d", listing(["a"]), clock.now);
  c.noteListed("e", listing(["b"]), clock.now);
  c.noteListed("f", listing(["c"]), clock.now);
  c.noteListed("g", listing(["x", "y", "z"]), clock.now);
  c.noteChanged("x", statToAttr(fakeStat()), 0);
  c.noteChanged("y", statToAttr(fakeStat()), 0);
  deepStrictEqual(c.takeListed("d", "a"), undefined, "the oldest listing went");
  deepStrictEqual(c.takeListed("e", "b")?.stat.ino, 100n);
  deepStrictEqual(c.takeListed("f", "c")?.stat.ino, 100n);
  deepStrictEqual(c.takeListed("g", "x"), undefined, "larger than the bound: not kept");
  deepStrictEqual(c.takeChanged("x", 0), undefined);
  deepStrictEqual(c.takeChanged("y", 0)?.ino, 100n);
});

Deno.test("attr cache: an inode's attributes after our change answer one GETATTR within the timeout, if nothing changed since", () => {
  const { cache: c, clock } = cache();
  const attr = statToAttr(fakeStat());
  c.noteChanged("d", attr, 0);
  deepStrictEqual(c.takeChanged("d", 0), attr);
  deepStrictEqual(c.takeChanged("d", 0), undefined);
  c.noteChanged("d", attr, 0);
  c.noteChanged("d", undefined, 0);
  deepStrictEqual(c.takeChanged("d", 0), undefined, "unknown attributes forget older ones");
  c.noteChanged("f", attr, 4);
  deepStrictEqual(c.takeChanged("f", 5), undefined, "a file's, after a change through the mount");
  const dir = statToAttr(fakeStat({ mode: 0o040755 }));
  c.noteChanged("d", dir, 4);
  deepStrictEqual(c.takeChanged("d", 5), dir, "a directory's, after a write to a file in it");
  c.noteChanged("d", attr, 0);
  clock.now += 1000;
  deepStrictEqual(c.takeChanged("d", 0), undefined);
});

Deno.test("attr cache: newer attributes of a changed directory replace its noted ones (chmod after rmdir)", () => {
  const { cache: c } = cache();
  const dir = fakeNode("d");
  c.noteChanged("d", statToAttr(fakeStat({ mode: 0o040755 })), 0);
  c.setAttr(dir, statToAttr(fakeStat({ mode: 0o040644 })));
  deepStrictEqual(c.takeChanged("d", 0), undefined, "a GETATTR after the chmod must not see 0755");
  c.noteChanged("d", statToAttr(fakeStat({ mode: 0o040755 })), 0);
  c.setAttr(fakeNode("d"), statToAttr(fakeStat({ mode: 0o040700 })));
  deepStrictEqual(c.takeChanged("d", 0), undefined, "attributes told by a lookup are newer too");
});

Deno.test("attr cache: complete listings answer absent names within their time, in bounds", () => {
  const { cache: c, clock } = cache({ limits: { completeDirs: 2, completeNames: 5 } });
  c.noteComplete("a", ["x", "y"], clock.now);
  deepStrictEqual([c.knownAbsent("a", "z"), c.knownAbsent("a", "x")], [true, false]);
  deepStrictEqual(c.knownAbsent("b", "z"), false, "no listing: not known");
  clock.now += 500;
  deepStrictEqual(c.knownAbsent("a", "z"), false, "expired");
  c.noteComplete("a", ["x"], clock.now);
  c.forgetComplete("a");
  deepStrictEqual(c.knownAbsent("a", "z"), false, "forgotten at a change");
  // Two directories at most, five names in all: the oldest listings go first.
  c.noteComplete("a", ["1"], clock.now);
  c.noteComplete("b", ["1", "2"], clock.now);
  c.noteComplete("c", ["1"], clock.now);
  deepStrictEqual([c.knownAbsent("a", "z"), c.knownAbsent("b", "z")], [false, true]);
  c.noteComplete("d", ["1", "2", "3", "4"], clock.now);
  deepStrictEqual([c.knownAbsent("b", "z"), c.knownAbsent("c", "z")], [false, true]);
  deepStrictEqual(c.completeDirs, 2);
  c.noteComplete("e", ["1", "2", "3", "4", "5", "6"], clock.now);
  deepStrictEqual(c.knownAbsent("e", "z"), false, "too many names: not kept");
  c.clear();
  deepStrictEqual(c.completeDirs, 0);
});

Deno.test("attr cache: a complete listing keeps its other names at a change, and lasts while vouched", () => {
  const watched = new Set(["a"]);
  const { cache: c, clock } = cache({
    vouched: (k) => watched.has(k),
    limits: { completeNames: 3 },
  });
  c.noteComplete("a", ["x"], clock.now);
  c.noteComplete("b", ["x"], clock.now);
  c.notePresent("a", "n"); // created (or renamed to, or removed: not known absent either way)
  deepStrictEqual([c.knownAbsent("a", "n"), c.knownAbsent("a", "z")], [false, true]);
  clock.now += 60_000;
  deepStrictEqual([c.knownAbsent("a", "z"), c.knownAbsent("b", "z")], [true, false]);
  watched.delete("a");
  deepStrictEqual(c.knownAbsent("a", "z"), false, "no longer watched: past its time");
  // Not read under a watch (a directory the mount just made): its time only, watched or not.
  watched.add("c");
  c.noteComplete("c", [], clock.now, false);
  deepStrictEqual(c.knownAbsent("c", "z"), true);
  clock.now += 500;
  deepStrictEqual(c.knownAbsent("c", "z"), false);
  // Past the bound of names, a change forgets the listing rather than grow it.
  c.noteComplete("a", ["1", "2", "3"], clock.now);
  c.notePresent("a", "4");
  deepStrictEqual(c.knownAbsent("a", "z"), false);
});
