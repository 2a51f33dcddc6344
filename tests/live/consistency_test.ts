// Acceptance: changes made inside the container while the host reads through the mount: once a
// change is visible, no later read shows the older state. A seeded sequence of ≥ 2,000 changes
// (files rewritten in place or replaced by rename with increasing versions, names created once
// and removed once, chmods as noise) runs in a shell inside the container while the host lists
// the directory, reads the files and looks names up in a loop. Violations: a file read showing
// a version older than one read before; a name seen, then seen gone, then seen again; at the
// end, a name looked up that the container does not have (or the reverse). Replay a
// failure with DOCKERFUSE_SEED=n (the seed is printed).

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { startMount } from "../e2e/harness.ts";
import { Inside, lstatOrNone, names, until } from "./helpers.ts";

const CHANGES = 2000;
const FILES = 8;
const BATCH = 10;

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

Deno.test("live: no read shows an older state once a newer one was seen", async () => {
  const seed = Number(Deno.env.get("DOCKERFUSE_SEED") ?? Date.now() % 1_000_000);
  console.log(`seed ${seed} (replay with DOCKERFUSE_SEED=${seed})`);
  const rand = rng(seed);
  // The changes, in batches of shell commands.
  const batches: string[][] = [];
  let version = 0;
  let nextName = 0;
  const live: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    if (i % BATCH === 0) batches.push([]);
    const batch = batches[batches.length - 1];
    const pick = rand(10);
    if (pick < 3) batch.push(`echo ${++version} > /d/f${rand(FILES)}`);
    else if (pick < 5) {
      batch.push(`echo ${++version} > /d/.t && mv /d/.t /d/f${rand(FILES)}`);
    } else if (pick < 7 || live.length === 0) {
      live.push(nextName);
      batch.push(`: > /d/n${nextName++}`);
    } else if (pick < 9) {
      batch.push(`rm /d/n${live.splice(rand(live.length), 1)[0]}`);
    } else batch.push(`chmod ${rand(2) ? 600 : 644} /d/f${rand(FILES)}`);
  }
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const name = `dockerfuse-live-rand-${crypto.randomUUID().slice(0, 8)}`;
  const container = await startTestContainer(bed, "glibc", { name, args: ["sleep", "infinity"] });
  const m = await startMount("glibc", { container });
  const inside = new Inside(container);
  const violations: string[] = [];
  try {
    const d = `${m.mountpoint}/d`;
    const init = Array.from({ length: FILES }, (_, k) => `echo 0 > /d/f${k}`).join("; ");
    await inside.run(`mkdir -p /d && ${init}`);
    ok(await until(async () => (await lstatOrNone(`${d}/f${FILES - 1}`)) !== undefined) < 5000);
    const newest = new Array<number>(FILES).fill(0);
    const seen = new Map<number, "present" | "gone">();
    const observeName = (n: number, present: boolean, how: string): void => {
      const before = seen.get(n);
      if (present && before === "gone") violations.push(`n${n} back after gone (${how})`);
      if (present && before === undefined) seen.set(n, "present");
      if (!present && before === "present") seen.set(n, "gone");
    };
    let reads = 0;
    let iterations = 0;
    let done = false;
    const reader = (async () => {
      for (; !done; iterations++) {
        const listed = new Set(await names(d));
        for (const entry of listed) {
          if (/^n\d+$/.test(entry)) observeName(Number(entry.slice(1)), true, "listing");
        }
        for (const [n, state] of seen) {
          if (state === "present" && !listed.has(`n${n}`)) {
            observeName(n, false, "listing");
          }
        }
        for (let k = 0; k < FILES; k++) {
          const text = await Deno.readTextFile(`${d}/f${k}`).catch(() => "");
          if (text === "") continue; // rewritten in place right now (truncated, not yet written)
          const v = Number(text.trim());
          if (v < newest[k]) violations.push(`f${k}: read ${v} after ${newest[k]}`);
          newest[k] = Math.max(newest[k], v);
          reads++;
        }
        const probe = rand(Math.max(1, nextName));
        observeName(probe, (await lstatOrNone(`${d}/n${probe}`)) !== undefined, "lookup");
      }
    })();
    for (const batch of batches) {
      // The reader takes at least one turn per batch: reads interleave with every batch.
      const turns = iterations;
      await inside.run(batch.join("\n"));
      while (iterations === turns) await new Promise((r) => setTimeout(r, 1));
    }
    done = true;
    await reader;
    console.log(
      `${CHANGES} changes, ${iterations} reader turns, ${reads} file reads, ${violations.length} violations`,
    );
    deepStrictEqual(violations.slice(0, 10), []);
    // And in the end the mount shows what the container has.
    const inContainer = (await new Deno.Command("docker", {
      args: ["exec", container, "sh", "-c", "cd /d && ls -1 && cat f*"],
      stdout: "piped",
    }).output()).stdout;
    const want = new TextDecoder().decode(inContainer);
    const shown = async (): Promise<string> => {
      const list = (await names(d)).filter((n) => !n.startsWith("."));
      const texts = await Promise.all(
        Array.from({ length: FILES }, (_, k) => Deno.readTextFile(`${d}/f${k}`)),
      );
      return `${list.join("\n")}\n${texts.join("")}`;
    };
    ok(await until(async () => (await shown()) === want, 3000) < 3000, "final state differs");
    // Every name ever made, looked up one by one: a name the kernel kept after its removal shows.
    const present = new Set(want.split("\n"));
    const wrong: string[] = [];
    for (let n = 0; n < nextName; n++) {
      const there = (await lstatOrNone(`${d}/n${n}`)) !== undefined;
      if (there !== present.has(`n${n}`)) wrong.push(`n${n} ${there ? "shown" : "missing"}`);
    }
    deepStrictEqual(wrong.slice(0, 10), [], `${wrong.length} names looked up wrong`);
    equal(violations.length, 0);
  } finally {
    await inside.close();
    await m.cleanup();
    await removeTestContainer(bed, container);
  }
});
