// `deno task bench deploy [--runs N] [--mbit R]`: mount time with the satellite uploaded into the
// container against run in a sidecar from the reusable image (first mount: image made; later
// mounts: reused), locally (unix socket) and as a remote engine over a link throttled to R Mbit/s
// (a pacing TCP proxy on 127.0.0.1 in front of the engine's socket; traffic only on loopback).
// Prints figures (median of N runs); asserts nothing about time.

import { cliRunArgs } from "../../src/cli/launch.ts";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../testbed/mod.ts";

const decoder = new TextDecoder();

interface Run {
  /** the client's own figure: deployment start to the mount answering */
  readyMs: number;
  /** command start to the mount answering (process start and engine connection included) */
  wallMs: number;
}

/** One `dockerfuse mount`, stopped once it answers. */
async function mountOnce(
  container: string,
  mode: string,
  env: Record<string, string>,
): Promise<Run> {
  const mountpoint = await Deno.makeTempDir({ prefix: "dockerfuse-bench-deploy-" });
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(["mount", "--deploy", mode, container, mountpoint]),
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  let wallMs = NaN;
  try {
    for await (const chunk of child.stderr) {
      log += decoder.decode(chunk, { stream: true });
      if (/ Mounted '/.test(log)) {
        wallMs = performance.now() - started;
        break;
      }
    }
    const ready = / Mounted '[^']*' on '[^']*' in (\d+) ms/.exec(log);
    if (!ready) throw new Error(`dockerfuse mount --deploy ${mode} failed:\n${log}`);
    return { readyMs: Number(ready[1]), wallMs };
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(mountpoint, { recursive: true }).catch(() => {});
  }
}

async function prune(env: Record<string, string>): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: cliRunArgs(["prune"]),
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`dockerfuse prune failed: ${decoder.decode(out.stderr)}`);
}

/** Paces bytes to `bytesPerSecond` (shared by every connection in one direction). */
class Pacer {
  #next = 0;
  readonly #rate: number;
  constructor(bytesPerSecond: number) {
    this.#rate = bytesPerSecond;
  }
  async take(n: number): Promise<void> {
    const now = performance.now();
    this.#next = Math.max(this.#next, now) + (n / this.#rate) * 1000;
    const wait = this.#next - now;
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

/** A TCP listener on 127.0.0.1 forwarding to the engine's unix socket at `mbit` Mbit/s. */
export function throttledProxy(socketPath: string, mbit: number): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const up = new Pacer((mbit * 1e6) / 8);
  const down = new Pacer((mbit * 1e6) / 8);
  const open = new Set<Deno.Conn>();
  const pipe = async (from: Deno.Conn, to: Deno.Conn, pacer: Pacer): Promise<void> => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        await pacer.take(n);
        let done = 0;
        while (done < n) done += await to.write(buffer.subarray(done, n));
      }
      await to.closeWrite().catch(() => {});
    } catch {
      for (const c of [from, to]) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
    }
  };
  (async () => {
    try {
      for await (const client of listener) {
        (async () => {
          const engine = await Deno.connect({ transport: "unix", path: socketPath });
          open.add(client).add(engine);
          await Promise.all([pipe(client, engine, up), pipe(engine, client, down)]);
          for (const c of [client, engine]) {
            open.delete(c);
            try {
              c.close();
            } catch {
              // closed
            }
          }
        })();
      }
    } catch {
      // closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      try {
        listener.close();
      } catch {
        // closed before
      }
      for (const c of open) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
    },
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function measure(
  label: string,
  container: string,
  env: Record<string, string>,
  runs: number,
): Promise<string[]> {
  const rows: string[] = [];
  const row = (what: string, results: Run[]): void => {
    const line = `| ${label} | ${what} | ${median(results.map((r) => r.readyMs))} | ${
      Math.round(median(results.map((r) => r.wallMs)))
    } | ${results.length} |`;
    console.log(line);
    rows.push(line);
  };
  const upload: Run[] = [];
  for (let i = 0; i < runs; i++) upload.push(await mountOnce(container, "upload", env));
  row("upload (every mount)", upload);
  const first: Run[] = [];
  for (let i = 0; i < Math.min(runs, 3); i++) {
    await prune(env);
    first.push(await mountOnce(container, "sidecar", env));
  }
  row("sidecar, first mount (image made)", first);
  const reused: Run[] = [];
  for (let i = 0; i < runs; i++) reused.push(await mountOnce(container, "sidecar", env));
  row("sidecar, image reused", reused);
  return rows;
}

async function main(args: string[]): Promise<number> {
  const value = (flag: string, fallback: number): number => {
    const at = args.indexOf(flag);
    return at >= 0 ? Number(args[at + 1]) : fallback;
  };
  const runs = value("--runs", 5);
  const mbit = value("--mbit", 100);
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  if (!bed.dockerHost.startsWith("unix://")) {
    console.error(`Cannot throttle the engine at ${bed.dockerHost}: not a unix socket`);
    return 1;
  }
  const container = await startTestContainer(bed, "glibc");
  const proxy = throttledProxy(bed.dockerHost.slice("unix://".length), mbit);
  try {
    console.log("| engine | deployment | ready ms (median) | wall ms (median) | runs |");
    console.log("|---|---|---|---|---|");
    await measure("local (unix socket)", container, { DOCKER_HOST: bed.dockerHost }, runs);
    await measure(
      `remote, ${mbit} Mbit/s (tcp)`,
      container,
      { DOCKER_HOST: `tcp://127.0.0.1:${proxy.port}` },
      runs,
    );
  } finally {
    proxy.close();
    await removeTestContainer(bed, container);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
