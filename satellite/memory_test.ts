import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  cgroupMemoryLimit,
  DEFAULT_BUDGET,
  directFits,
  ioWorkersFit,
  memoryBudget,
  MemoryGuard,
  MIN_BUDGET,
  parseRssAnon,
  preferOomKill,
} from "./memory.ts";

const MiB = 2 ** 20;

Deno.test("cgroupMemoryLimit reads cgroup v2, then v1, and knows 'no limit'", () => {
  const files = (map: Record<string, string>) => (path: string) => map[path];
  strictEqual(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "67108864\n" })), 64 * MiB);
  strictEqual(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "max\n" })), undefined);
  strictEqual(
    cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory/memory.limit_in_bytes": "134217728\n" })),
    128 * MiB,
  );
  strictEqual(
    cgroupMemoryLimit(
      files({ "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n" }),
    ),
    undefined,
  );
  strictEqual(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "garbage" })), undefined);
  strictEqual(cgroupMemoryLimit(files({})), undefined);
});

Deno.test("memoryBudget is a quarter of the limit, between 16 and 24 MiB", () => {
  strictEqual(memoryBudget(undefined), DEFAULT_BUDGET);
  strictEqual(memoryBudget(64 * MiB), 16 * MiB);
  strictEqual(memoryBudget(32 * MiB), MIN_BUDGET);
  strictEqual(memoryBudget(80 * MiB), 20 * MiB);
  strictEqual(memoryBudget(8 * 1024 * MiB), DEFAULT_BUDGET);
});

Deno.test("parseRssAnon reads the kB line of /proc/self/status", () => {
  strictEqual(
    parseRssAnon("VmRSS:\t   30000 kB\nRssAnon:\t   12932 kB\nRssFile: 1 kB\n"),
    12932 * 1024,
  );
  strictEqual(parseRssAnon("VmRSS: 1 kB\n"), undefined);
});

Deno.test("preferOomKill writes 1000 to oom_score_adj and says what failed", () => {
  const writes: [string, string][] = [];
  const line = preferOomKill((path, text) => writes.push([path, text]));
  deepStrictEqual(writes, [["/proc/self/oom_score_adj", "1000"]]);
  strictEqual(line.startsWith("oom_score_adj 1000"), true);
  const refused = preferOomKill(() => {
    throw new Error("Permission denied");
  });
  strictEqual(refused.includes("cannot raise oom_score_adj (Permission denied)"), true);
});

Deno.test("MemoryGuard collects past the budget, and backs off when memory is live", () => {
  let rss = 10 * MiB;
  let freed = 0;
  const logs: string[] = [];
  let gcs = 0;
  const guard = new MemoryGuard(16 * MiB, {
    rssAnon: () => rss,
    gc: () => {
      gcs++;
      rss -= freed;
    },
    trim: () => {},
    log: (m) => logs.push(m),
  });
  for (let i = 0; i < 640; i++) guard.tick();
  strictEqual(gcs, 0, "under the budget: no collection");
  rss = 20 * MiB;
  freed = 8 * MiB;
  for (let i = 0; i < 64; i++) guard.tick();
  strictEqual(gcs, 1, "past the budget: one collection per check");
  strictEqual(rss, 12 * MiB);
  // Live memory: a collection frees nothing; the guard raises its threshold instead of looping.
  rss = 30 * MiB;
  freed = 0;
  guard.check();
  strictEqual(gcs, 2);
  strictEqual(logs.length, 1);
  for (let i = 0; i < 64 * 10; i++) guard.tick();
  strictEqual(gcs, 2, "no collection while usage stays at the raised threshold");
  // Once memory grows past the raised threshold it collects again.
  rss = 40 * MiB;
  guard.check();
  strictEqual(gcs, 3);
});

Deno.test("MemoryGuard checks after a few large answers as after many small requests", () => {
  let checks = 0;
  const guard = new MemoryGuard(16 * MiB, {
    rssAnon: () => {
      checks++;
      return 10 * MiB;
    },
    trim: () => {},
    log: () => {},
  });
  for (let i = 0; i < 63; i++) guard.tick(100);
  strictEqual(checks, 0);
  guard.tick(100);
  strictEqual(checks, 1, "the 64th request");
  guard.tick(768 * 1024);
  strictEqual(checks, 1);
  guard.tick(768 * 1024);
  strictEqual(checks, 2, "1.5 MiB answered in two requests");
  guard.tick(0);
  strictEqual(checks, 2, "the count starts again after a check");
});

Deno.test("MemoryGuard: memory reserved for a worker raises the budget", () => {
  let rss = 20 * MiB;
  let gcs = 0;
  const guard = new MemoryGuard(16 * MiB, {
    rssAnon: () => rss,
    gc: () => gcs++,
    trim: () => {},
    log: () => {},
  });
  guard.reserve(8 * MiB);
  guard.check();
  strictEqual(gcs, 0, "20 MiB is within 16 + 8");
  rss = 25 * MiB;
  guard.check();
  strictEqual(gcs, 1);
});

Deno.test("ioWorkersFit: I/O workers only where the container has room for them", () => {
  strictEqual(ioWorkersFit(undefined), true);
  strictEqual(ioWorkersFit(1024 * MiB), true);
  strictEqual(ioWorkersFit(256 * MiB), true);
  strictEqual(ioWorkersFit(64 * MiB), false);
});

Deno.test("directFits: the direct channel only where the container has room for its pace", () => {
  strictEqual(directFits(undefined), true);
  strictEqual(directFits(256 * MiB), true);
  strictEqual(directFits(255 * MiB), false);
  strictEqual(directFits(64 * MiB), false);
});
