import { deepStrictEqual } from "node:assert/strict";
import { BulkLane } from "./lane.ts";

const MiB = 1 << 20;

Deno.test("bulk lane: calls start while they fit, the rest wait in order", () => {
  const lane = new BulkLane(2 * MiB);
  const started: string[] = [];
  for (const name of ["a", "b", "c", "d"]) lane.enter(MiB, () => started.push(name));
  deepStrictEqual(started, ["a", "b"]);
  deepStrictEqual([lane.inFlight, lane.waiting], [2 * MiB, 2]);
  lane.leave(MiB);
  deepStrictEqual(started, ["a", "b", "c"]);
  lane.leave(MiB);
  lane.leave(MiB);
  deepStrictEqual(started, ["a", "b", "c", "d"]);
  deepStrictEqual([lane.inFlight, lane.waiting], [MiB, 0]);
});

Deno.test("bulk lane: a small call never overtakes a waiting one (FIFO)", () => {
  const lane = new BulkLane(2 * MiB);
  const started: string[] = [];
  lane.enter(2 * MiB, () => started.push("big"));
  lane.enter(MiB, () => started.push("one"));
  lane.enter(64 << 10, () => started.push("small"));
  deepStrictEqual(started, ["big"]);
  lane.leave(2 * MiB);
  deepStrictEqual(started, ["big", "one", "small"]);
});

Deno.test("bulk lane: a call larger than the limit goes alone", () => {
  const lane = new BulkLane(MiB);
  const started: string[] = [];
  lane.enter(3 * MiB, () => started.push("huge"));
  lane.enter(1, () => started.push("tiny"));
  deepStrictEqual(started, ["huge"]);
  lane.leave(3 * MiB);
  deepStrictEqual(started, ["huge", "tiny"]);
});

Deno.test("bulk lane: a waiting call can be withdrawn, a started one not", () => {
  const lane = new BulkLane(MiB);
  const started: string[] = [];
  const first = lane.enter(MiB, () => started.push("a"));
  const second = lane.enter(MiB, () => started.push("b"));
  lane.enter(MiB, () => started.push("c"));
  deepStrictEqual(first(), false);
  deepStrictEqual(second(), true);
  deepStrictEqual(second(), false);
  lane.leave(MiB);
  deepStrictEqual(started, ["a", "c"]);
});
