import { deepStrictEqual as eq, strictEqual as is } from "node:assert/strict";
import {
  cgroupMemoryLimit,
  DEFAULT_BUDGET,
  memoryBudget,
  MemoryGuard,
  MIN_BUDGET,
  parseRssAnon,
  preferOomKill,
} from "./memory.ts";

const MiB = 2 ** 20;

Deno.test("cgroupMemoryLimit reads cgroup v2, then v1, and knows 'no limit'", () => {
  const files = (map: Record<string, string>) => (path: string) => map[path];
  is(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "67108864\n" })), 64 * MiB);
  is(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "max\n" })), undefined);
  is(
    cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory/memory.limit_in_bytes": "134217728\n" })),
    128 * MiB,
  );
  is(
    cgroupMemoryLimit(
      files({ "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n" }),
    ),
    undefined,
  );
  is(cgroupMemoryLimit(files({ "/sys/fs/cgroup/memory.max": "garbage" })), undefined);
  is(cgroupMemoryLimit(files({})), undefined);
});

Deno.test("memoryBudget is a quarter of the limit, between 16 and 24 MiB", () => {
  is(memoryBudget(undefined), DEFAULT_BUDGET);
  is(memoryBudget(64 * MiB), 16 * MiB);
  is(memoryBudget(32 * MiB), MIN_BUDGET);
  is(memoryBudget(80 * MiB), 20 * MiB);
  is(memoryBudget(8 * 1024 * MiB), DEFAULT_BUDGET);
});

Deno.test("parseRssAnon reads the kB line of /proc/self/status", () => {
  is(parseRssAnon("VmRSS:\t   30000 kB\nRssAnon:\t   12932 kB\nRssFile: 1 kB\n"), 12932 * 1024);
  is(parseRssAnon("VmRSS: 1 kB\n"), undefined);
});

Deno.test("preferOomKill writes 1000 to oom_score_adj and says what failed", () => {
  const writes: [string, string][] = [];
  const line = preferOomKill((path, text) => writes.push([path, text]));
  eq(writes, [["/proc/self/oom_score_adj", "1000"]]);
  is(line.startsWith("oom_score_adj 1000"), true);
  const refused = preferOomKill(() => {
    throw new Error("Permission denied");
  });
  is(refused.includes("cannot raise oom_score_adj (Permission denied)"), true);
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
  is(gcs, 0, "under the budget: no collection");
  rss = 20 * MiB;
  freed = 8 * MiB;
  for (let i = 0; i < 64; i++) guard.tick();
  is(gcs, 1, "past the budget: one collection per check");
  is(rss, 12 * MiB);
  // Live memory: a collection frees nothing; the guard raises its threshold instead of looping.
  rss = 30 * MiB;
  freed = 0;
  guard.check();
  is(gcs, 2);
  is(logs.length, 1);
  for (let i = 0; i < 64 * 10; i++) guard.tick();
  is(gcs, 2, "no collection while usage stays at the raised threshold");
  // Once memory grows past the raised threshold it collects again.
  rss = 40 * MiB;
  guard.check();
  is(gcs, 3);
});
