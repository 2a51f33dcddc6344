// Acceptance: a change made inside the container shows through the mount within 100 ms in 95 %
// of 100 trials, for a creation, a removal, a rename, a chmod, and an append to a file the host
// has open. Each trial first caches the old state on the host (lookup, listing, attributes,
// data), then makes the change through a shell kept open inside the container, and times from
// that shell's acknowledgement until the mount shows it, polling every 2 ms. The 100 ms bound
// is the issue's; the change feed's own latency here is a few ms, the margin is for the 2
// shared, busy cores.

import { equal, ok } from "node:assert/strict";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { startMount } from "../e2e/harness.ts";
import { Inside, lstatOrNone, names, percentile, until } from "./helpers.ts";

const TRIALS = 100;
const BOUND_MS = 100;

Deno.test("live: changes inside the container show through the mount within 100 ms (p95)", async () => {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const name = `dockerfuse-live-vis-${crypto.randomUUID().slice(0, 8)}`;
  const container = await startTestContainer(bed, "glibc", {
    name,
    args: ["sleep", "infinity"],
  });
  const m = await startMount("glibc", { container });
  const inside = new Inside(container);
  const latencies: Record<string, number[]> = {
    create: [],
    remove: [],
    rename: [],
    chmod: [],
    append: [],
  };
  try {
    const d = `${m.mountpoint}/d`;
    await inside.run("mkdir -p /d && : > /d/log && echo a > /d/f && chmod 644 /d/f");
    ok(await until(async () => (await lstatOrNone(`${d}/log`)) !== undefined) < 5000);
    const log = await Deno.open(`${d}/log`, { read: true });
    let logged = "";
    const buf = new Uint8Array(4096);
    const readLog = async (): Promise<string> => {
      for (;;) {
        const n = await log.read(buf);
        if (n === null || n === 0) return logged;
        logged += new TextDecoder().decode(buf.subarray(0, n));
      }
    };
    for (let i = 0; i < TRIALS; i++) {
      // creation: the host looked the name up (absent) and listed the directory first
      equal(await lstatOrNone(`${d}/c${i}`), undefined);
      await names(d);
      await inside.run(`echo x > /d/c${i}`);
      latencies.create.push(
        await until(async () => (await lstatOrNone(`${d}/c${i}`)) !== undefined),
      );
      // removal
      await names(d);
      await inside.run(`rm /d/c${i}`);
      latencies.remove.push(
        await until(async () => (await lstatOrNone(`${d}/c${i}`)) === undefined),
      );
      // rename
      await inside.run(`echo y > /d/a${i}`);
      await until(async () => (await lstatOrNone(`${d}/a${i}`)) !== undefined);
      equal(await lstatOrNone(`${d}/b${i}`), undefined);
      await inside.run(`mv /d/a${i} /d/b${i}`);
      latencies.rename.push(
        await until(async () =>
          (await lstatOrNone(`${d}/b${i}`)) !== undefined &&
          (await lstatOrNone(`${d}/a${i}`)) === undefined
        ),
      );
      await inside.run(`rm /d/b${i}`);
      // chmod
      const mode = i % 2 === 0 ? 0o600 : 0o644;
      equal((await Deno.lstat(`${d}/f`)).mode! & 0o777, mode === 0o600 ? 0o644 : 0o600);
      await inside.run(`chmod ${mode.toString(8)} /d/f`);
      latencies.chmod.push(
        await until(async () => ((await Deno.lstat(`${d}/f`)).mode! & 0o777) === mode),
      );
      // an append to the file the host has open (tail -f: fstat, then read what is new)
      await readLog();
      await inside.run(`echo line${i} >> /d/log`);
      latencies.append.push(await until(async () => (await readLog()).endsWith(`line${i}\n`)));
    }
    log.close();
    const report = Object.entries(latencies).map(([kind, ms]) =>
      `${kind} p50 ${percentile(ms, 50).toFixed(1)} ms, p95 ${
        percentile(ms, 95).toFixed(1)
      } ms, max ${Math.max(...ms).toFixed(1)} ms`
    );
    console.log(`visibility over ${TRIALS} trials each: ${report.join("; ")}`);
    for (const [kind, ms] of Object.entries(latencies)) {
      ok(percentile(ms, 95) <= BOUND_MS, `${kind}: p95 ${percentile(ms, 95)} ms > ${BOUND_MS} ms`);
    }
  } finally {
    await inside.close();
    await m.cleanup();
    await removeTestContainer(bed, container);
  }
});

Deno.test("live: tail -f prints a line appended inside the container within its poll interval", async () => {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const name = `dockerfuse-live-tail-${crypto.randomUUID().slice(0, 8)}`;
  const container = await startTestContainer(bed, "glibc", { name, args: ["sleep", "infinity"] });
  const m = await startMount("glibc", { container });
  const inside = new Inside(container);
  try {
    await inside.run("mkdir -p /d && echo start > /d/log");
    ok(await until(async () => (await lstatOrNone(`${m.mountpoint}/d/log`)) !== undefined) < 5000);
    // GNU tail polls a FUSE file (no inotify events for it on the host): every 0.2 s here.
    const tail = new Deno.Command("tail", {
      args: ["-f", "-s", "0.2", `${m.mountpoint}/d/log`],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let out = "";
    const reading = (async () => {
      for await (const chunk of tail.stdout) out += new TextDecoder().decode(chunk);
    })();
    try {
      ok(await until(() => out.includes("start"), 5000) < 5000);
      for (let i = 0; i < 5; i++) {
        await inside.run(`echo appended${i} >> /d/log`);
        // One poll interval (0.2 s) plus the bound of the acceptance line.
        const ms = await until(() => out.includes(`appended${i}\n`), 5000);
        ok(ms <= 200 + 100, `tail -f showed line ${i} after ${ms} ms`);
      }
    } finally {
      tail.kill();
      await tail.status;
      await reading.catch(() => {});
    }
  } finally {
    await inside.close();
    await m.cleanup();
    await removeTestContainer(bed, container);
  }
});
