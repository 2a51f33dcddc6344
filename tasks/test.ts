// The test runner behind `deno task test[:group]`.
//
// It prepares what a group needs (the Docker test bed, FUSE tools, the packaged satellite), runs
// `deno test` over the group's folders and ends with one plain line `N passed, N failed` taken
// from the real run. A preparation that fails counts as a failed test: nothing is skipped quietly.

const ROOT = new URL("../", import.meta.url);

type Need = "bed" | "fuse" | "satellite";

interface Group {
  readonly paths: readonly string[];
  readonly needs: readonly Need[];
}

/**
 * The groups. `unit` holds the pure tests next to the code (src/, satellite/: no root, Docker or
 * FUSE needed); every other group is one folder of tests/ needing the kernel, FUSE or Docker. The
 * folders never overlap, so `all` runs each test exactly once.
 */
const GROUPS: Readonly<Record<string, Group>> = {
  unit: { paths: ["src/", "satellite/"], needs: [] },
  fuse: { paths: ["tests/fuse/"], needs: ["fuse"] },
  satellite: { paths: ["tests/satellite/"], needs: ["bed", "satellite"] },
  docker: { paths: ["tests/docker/"], needs: ["bed", "satellite"] },
  testbed: { paths: ["tests/testbed/"], needs: ["bed"] },
  fs: { paths: ["tests/fs/"], needs: ["fuse"] },
  e2e: { paths: ["tests/e2e/"], needs: ["bed", "fuse", "satellite"] },
  volume: { paths: ["tests/volume/"], needs: ["bed", "fuse", "satellite"] },
  reliability: { paths: ["tests/reliability/"], needs: ["bed", "fuse", "satellite"] },
  tree: { paths: ["tests/tree/"], needs: ["bed", "fuse", "satellite"] },
  sidecar: { paths: ["tests/sidecar/"], needs: ["bed", "fuse", "satellite"] },
  live: { paths: ["tests/live/"], needs: ["bed", "fuse", "satellite"] },
  // pjdfstest through a mount, three full runs in a row (about 2.5 min each).
  posix: { paths: ["tests/posix/"], needs: ["bed", "fuse", "satellite"] },
};

/** Groups that `all` leaves out (none). */
const NOT_IN_ALL = new Set<string>();

/** Every group at once: the union of their folders and of their needs. */
function allGroups(): Group {
  const needs = new Set<Need>();
  const paths: string[] = [];
  for (const [name, group] of Object.entries(GROUPS)) {
    if (NOT_IN_ALL.has(name)) continue;
    group.needs.forEach((n) => needs.add(n));
    paths.push(...group.paths);
  }
  const nested = paths.filter((p) => paths.some((q) => q !== p && p.startsWith(q)));
  if (nested.length > 0 || new Set(paths).size !== paths.length) {
    throw new Error(`test groups overlap (${nested.join(", ")}): a test would run twice`);
  }
  // The bed first: it installs system packages in one go (FUSE tools included).
  const ordered = [...needs].sort((a, b) => Number(b === "bed") - Number(a === "bed"));
  return { paths, needs: ordered };
}

/** Parses deno test's summary line; undefined when there is none (the run crashed). */
export function parseSummary(output: string): { passed: number; failed: number } | undefined {
  const lines = output.split("\n").reverse();
  for (const line of lines) {
    // deno-lint-ignore no-control-regex
    const plain = line.replace(/\x1b\[[0-9;]*m/g, "");
    const match = /^(?:ok|FAILED) \| (\d+) passed.*\| (\d+) failed/.exec(plain);
    if (match) return { passed: Number(match[1]), failed: Number(match[2]) };
  }
  return undefined;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(new URL(path, ROOT));
    return true;
  } catch {
    return false;
  }
}

async function prepare(need: Need): Promise<void> {
  switch (need) {
    case "bed": {
      const { ensureTestBed } = await import("./testbed/mod.ts");
      await ensureTestBed();
      return;
    }
    case "fuse": {
      const { ensureFuseTools } = await import("./testbed/mod.ts");
      await ensureFuseTools();
      return;
    }
    case "satellite": {
      const status = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "tasks/build_satellite.ts"],
        cwd: ROOT,
      }).spawn().status;
      if (!status.success) throw new Error("deno task build-satellite failed");
      return;
    }
  }
}

async function main(args: string[]): Promise<number> {
  const name = args[0] ?? "all";
  const group = name === "all" ? allGroups() : GROUPS[name];
  if (!group) {
    console.error(`Unknown test group '${name}'. Groups: all, ${Object.keys(GROUPS).join(", ")}`);
    return 2;
  }
  let setupFailures = 0;
  for (const need of group.needs) {
    try {
      await prepare(need);
    } catch (error) {
      setupFailures++;
      console.error(`Cannot prepare '${need}' for the tests: ${(error as Error).message}`);
    }
  }
  const paths = [];
  for (const path of group.paths) if (await exists(path)) paths.push(path);

  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "test",
      "-A",
      ...args.slice(1),
      ...paths,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
    env: { DOCKERFUSE_TEST_GROUP: name },
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    await Deno.stdout.write(chunk);
    output += decoder.decode(chunk, { stream: true });
    if (output.length > 1 << 20) output = output.slice(-(1 << 16));
  }
  const status = await child.status;
  const summary = parseSummary(output);
  const passed = summary?.passed ?? 0;
  let failed = (summary?.failed ?? 0) + setupFailures;
  if (!summary || (!status.success && failed === 0)) failed++; // crashed or failed to type-check
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
