// The benchmark's FUSE request trace (tasks/bench/fuse_trace.ts) on a real mount: the kernel's
// tracepoints name the mount's connection as the trace expects, and every request the workload
// made is counted under its opcode, none of another connection.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { describeProfile, FuseTrace, profileOf } from "../../tasks/bench/fuse_trace.ts";
import { py, requireFuse, withMount } from "./helpers.ts";
import { MemFs } from "./memfs.ts";

await requireFuse();

Deno.test("request trace: a mount's requests by opcode, with their latencies", () =>
  withMount(async ({ dir }) => {
    await py(`write_file("f", b"x")`, { cwd: dir });
    const trace = await FuseTrace.start();
    let profile;
    try {
      // Timeouts 0: each stat asks the filesystem again.
      await py(
        `
for i in range(5):
    os.stat("f")
R["absent"] = E(os.stat, "nope")
`,
        { cwd: dir },
      );
    } finally {
      profile = await trace.stop(dir);
    }
    const count = (op: string): number => profile.byOpcode.find((o) => o.opcode === op)?.count ?? 0;
    ok(count("LOOKUP") >= 6, describeProfile(profile));
    ok(count("GETATTR") + count("LOOKUP") >= 10, describeProfile(profile));
    equal(profile.overrun, false);
    ok(profile.byOpcode.every((o) => o.medianUs >= 0 && o.totalUs >= o.medianUs));
    deepStrictEqual(
      profile.answered,
      profile.byOpcode.reduce((n, o) => n + o.count, 0),
    );
    // The instance is gone: global tracing is left as it was.
    const instances = [...Deno.readDirSync("/sys/kernel/tracing/instances")].map((e) => e.name);
    ok(!instances.some((n) => n.startsWith("dockerfuse-bench-")), instances.join(", "));
  }, {
    fs: new MemFs({ rootMode: 0o777, entryTimeout: 0, attrTimeout: 0 }),
    mount: { debug: false },
  }));

Deno.test("request trace: lines of other connections and requests begun before are left out", () => {
  const trace = [
    "# entries-in-buffer/entries-written: 7/7   #P:2",
    "  cat-1  [000] .....   10.000100: fuse_request_send: connection 52 req 8 opcode 15 (FUSE_READ) len 80",
    "  cat-1  [000] .....   10.000200: fuse_request_send: connection 53 req 8 opcode 1 (FUSE_LOOKUP) len 46",
    "  rdr-2  [001] .....   10.000400: fuse_request_end: connection 52 req 8 len 4096 error 0",
    "  rdr-2  [001] .....   10.000900: fuse_request_end: connection 53 req 8 len 144 error 0",
    "  rdr-2  [001] .....   10.001000: fuse_request_end: connection 52 req 6 len 16 error 0",
    "  cat-1  [000] .....   10.002000: fuse_request_send: connection 52 req 10 opcode 2 (FUSE_FORGET) len 48",
  ].join("\n");
  const p = profileOf(trace, 52);
  deepStrictEqual(p.byOpcode.map((o) => [o.opcode, o.count, Math.round(o.medianUs)]), [
    ["READ", 1, 300],
  ]);
  deepStrictEqual([p.answered, p.unanswered], [1, 1]);
});
