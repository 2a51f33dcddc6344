/**
 * Satellite benchmark over local pipes (no Docker): small requests per second with 64 in
 * flight, and 1 MiB reads in MB/s. `deno run -A tasks/bench/satellite.ts [--json]`; the
 * project's tasks/bench.ts calls {@link benchSatellite}.
 *
 * @module
 */

import { RpcClient } from "../../src/protocol/mod.ts";

const SATELLITE = new URL("../../satellite/main.ts", import.meta.url);

/** Measured figures. */
export interface SatelliteBenchResult {
  /** lstat calls per second with `inFlight` outstanding. */
  smallRequestsPerSecond: number;
  inFlight: number;
  smallRequests: number;
  /** MB/s (10^6 bytes) of 1 MiB reads from a cached file, `readInFlight` outstanding. */
  readMBps: number;
  readInFlight: number;
  readBytes: number;
  /** 1 MiB writes in MB/s. */
  writeMBps: number;
  /** Milliseconds from spawn to handshake. */
  startMs: number;
}

/** Options of {@link benchSatellite}. */
export interface SatelliteBenchOptions {
  smallRequests?: number;
  inFlight?: number;
  /** Bytes read (and written) in total for the throughput figures. */
  readBytes?: number;
  readInFlight?: number;
  /** Command that runs the satellite (argv); default `deno run -A satellite/main.ts`. */
  command?: string[];
  /** Extra environment for that command. */
  env?: Record<string, string>;
}

async function pool(total: number, inFlight: number, one: (i: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < total) await one(next++);
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/** Runs the benchmark against a fresh temporary directory. */
export async function benchSatellite(
  options: SatelliteBenchOptions = {},
): Promise<SatelliteBenchResult> {
  const smallRequests = options.smallRequests ?? 100_000;
  const inFlight = options.inFlight ?? 64;
  const readBytes = options.readBytes ?? 2 * 1024 ** 3;
  const readInFlight = options.readInFlight ?? 4;
  const chunk = 1 << 20;
  const fileSize = 64 * chunk;
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-bench-" });
  try {
    await Deno.writeFile(`${dir}/small.txt`, new TextEncoder().encode("x"));
    await Deno.writeFile(`${dir}/large.bin`, new Uint8Array(fileSize).fill(0x5a));
    const argv = options.command ??
      [Deno.execPath(), "run", "-A", "--no-lock", SATELLITE.pathname];
    const started = performance.now();
    const child = new Deno.Command(argv[0], {
      args: [...argv.slice(1), "--root", dir],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
      env: options.env,
    }).spawn();
    const client = new RpcClient(child.stdout, child.stdin, { timeoutMs: 0 });
    await client.ready;
    const startMs = performance.now() - started;
    const call = client.call;

    // warm-up
    await pool(2000, inFlight, async () => {
      await call.lstat({ path: "small.txt" });
    });
    let t = performance.now();
    await pool(smallRequests, inFlight, async () => {
      const r = await call.lstat({ path: "small.txt" });
      if (!r.ok) throw new Error(r.message);
    });
    const smallRequestsPerSecond = smallRequests / ((performance.now() - t) / 1000);

    const file = await call.open({ path: "large.bin", flags: 2 });
    if (!file.ok) throw new Error(file.message);
    const handle = file.value.handle;
    const reads = Math.ceil(readBytes / chunk);
    t = performance.now();
    await pool(reads, readInFlight, async (i) => {
      const offset = BigInt((i % 64) * chunk);
      const r = await call.read({ handle, offset, size: chunk });
      if (!r.ok || r.value.length !== chunk) throw new Error("short read");
    });
    const readMBps = reads * chunk / 1e6 / ((performance.now() - t) / 1000);

    const data = new Uint8Array(chunk).fill(0x33);
    const writes = Math.ceil(reads / 2);
    t = performance.now();
    await pool(writes, readInFlight, async (i) => {
      const offset = BigInt((i % 64) * chunk);
      const r = await call.write({ handle, offset, data });
      if (!r.ok || r.value !== chunk) throw new Error("short write");
    });
    const writeMBps = writes * chunk / 1e6 / ((performance.now() - t) / 1000);
    await call.release({ handle });
    await client.close();
    await child.status;
    return {
      smallRequestsPerSecond: Math.round(smallRequestsPerSecond),
      inFlight,
      smallRequests,
      readMBps: Math.round(readMBps),
      readInFlight,
      readBytes: reads * chunk,
      writeMBps: Math.round(writeMBps),
      startMs: Math.round(startMs),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The argv (and env) that starts the packaged satellite of this host's arch from
 * dist/satellite/<arch>/ through its private glibc loader, as in a container without libc.
 */
export async function packagedCommand(): Promise<{ argv: string[]; env: Record<string, string> }> {
  const dir = new URL(`../../dist/satellite/${Deno.build.arch}/`, import.meta.url).pathname
    .replace(/\/$/, "");
  const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
  const sub = (s: string) => s.replaceAll("{dir}", dir);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(manifest.env as Record<string, string>)) env[k] = sub(v);
  return { argv: (manifest.loaderCommand as string[]).map(sub), env };
}

/** Startup of the packaged satellite in one test image (medians over `runs`). */
export interface StartupResult {
  kind: string;
  arch: string;
  /** Upload through the archive API plus exec creation, ms. */
  deployMs: number;
  /** From the start of the deployment to the handshake, ms. */
  handshakeMs: number;
  /** lstat + opendir + readdir(plus) right after the handshake, ms. */
  firstRequestsMs: number;
  bundleBytes: number;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  return Math.round(v[Math.floor(v.length / 2)]);
}

/**
 * Deploys the packaged satellite into a fresh container of each test image kind and times
 * upload, start and the first requests. Needs the test bed (Docker) and a built bundle.
 */
export async function benchStartup(
  kinds: ("glibc" | "musl" | "static" | "arm64")[] = ["glibc", "musl", "static", "arm64"],
  runs = 3,
): Promise<StartupResult[]> {
  const { connectEngine, deploySatellite, readManifest } = await import("../../src/docker/mod.ts");
  const testbed = await import("../testbed/mod.ts");
  const bed = await testbed.ensureTestBed({ kinds });
  const engine = await connectEngine({ env: { DOCKER_HOST: bed.dockerHost } });
  const results: StartupResult[] = [];
  try {
    for (const kind of kinds) {
      const id = await testbed.startTestContainer(bed, kind, {
        name: `dfh-bench-sat-${kind}-${crypto.randomUUID().slice(0, 6)}`,
      });
      try {
        const info = await engine.inspectContainer(id);
        const dir = new URL(`../../dist/satellite/${info.arch}`, import.meta.url).pathname;
        const manifest = await readManifest(dir);
        let bundleBytes = 0;
        for (const f of manifest.files) bundleBytes += (await Deno.stat(`${dir}/${f.path}`)).size;
        const deploy: number[] = [], handshake: number[] = [], first: number[] = [];
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now();
          const session = await deploySatellite(engine, info, dir, { root: "/" });
          deploy.push(performance.now() - t0);
          session.stderr.cancel().catch(() => {});
          const client = new RpcClient(session.stdout, session.stdin, {
            expectedBuildId: manifest.buildId,
          });
          await client.ready;
          handshake.push(performance.now() - t0);
          const t1 = performance.now();
          await client.call.lstat({ path: "" });
          const d = await client.call.opendir({ path: "" });
          if (d.ok) await client.call.readdir({ handle: d.value.handle, offset: 0n, plus: true });
          first.push(performance.now() - t1);
          await client.close();
          await session.exited;
        }
        results.push({
          kind,
          arch: info.arch,
          deployMs: median(deploy),
          handshakeMs: median(handshake),
          firstRequestsMs: median(first),
          bundleBytes,
        });
      } finally {
        await testbed.removeTestContainer(bed, id);
      }
    }
  } finally {
    engine.close();
  }
  return results;
}

if (import.meta.main) {
  const packaged = Deno.args.includes("--packaged") ? await packagedCommand() : undefined;
  const result = await benchSatellite(
    packaged ? { command: packaged.argv, env: packaged.env } : {},
  );
  let startup: StartupResult[] | string = "not measured (--no-containers)";
  if (!Deno.args.includes("--no-containers")) {
    try {
      startup = await benchStartup();
    } catch (e) {
      startup = `not measured: ${e instanceof Error ? e.message : e}`;
    }
  }
  if (Deno.args.includes("--json")) console.log(JSON.stringify({ ...result, startup }));
  else {
    if (typeof startup === "string") console.log(`startup per image kind: ${startup}`);
    else {
      for (const r of startup) {
        console.log(
          `startup ${r.kind} (${r.arch}, ${(r.bundleBytes / 1e6).toFixed(1)} MB): ` +
            `upload+exec ${r.deployMs} ms, handshake ${r.handshakeMs} ms, ` +
            `first lstat+readdir ${r.firstRequestsMs} ms (median of 3)`,
        );
      }
    }
    console.log(
      `satellite over pipes: ${result.smallRequestsPerSecond} lstat/s (${result.inFlight} in flight), ` +
        `1 MiB reads ${result.readMBps} MB/s, 1 MiB writes ${result.writeMBps} MB/s ` +
        `(${result.readInFlight} in flight), start ${result.startMs} ms`,
    );
  }
}
