/**
 * A loopback TCP proxy that makes a local Docker engine look remote: every chunk is forwarded
 * after a fixed one-way delay (so a round trip costs twice that), optionally at a bounded rate.
 * The kernel here has no `tc netem`, so the delay is done in user space.
 *
 * `deno run -A tasks/bench/delay_proxy.ts --listen 127.0.0.1:2377 --to unix:///var/run/docker.sock
 *  --delay-ms 25 [--rate-mbit 100]` — then `DOCKER_HOST=tcp://127.0.0.1:2377`.
 *
 * Invariants: bytes keep their order per direction; a chunk is never sent before `delay` after it
 * arrived; with a rate, a direction never sends faster than the rate on average. Only loopback
 * addresses are accepted to listen on.
 *
 * @module
 */

/** Where the proxy forwards to. */
export type Target = { transport: "unix"; path: string } | {
  transport: "tcp";
  hostname: string;
  port: number;
};

/** Parses `unix:///path` or `tcp://host:port`. */
export function parseTarget(text: string): Target {
  if (text.startsWith("unix://")) return { transport: "unix", path: text.slice(7) };
  const m = /^tcp:\/\/([^:]+):(\d+)$/.exec(text);
  if (m) return { transport: "tcp", hostname: m[1], port: Number(m[2]) };
  throw new Error(`Cannot use '${text}' as a target: expected unix:///path or tcp://host:port`);
}

/** Options of {@link startDelayProxy}. */
export interface DelayProxyOptions {
  /** Loopback address to listen on; port 0 picks a free one. */
  hostname?: string;
  port?: number;
  target: Target;
  /** One-way delay of every chunk, in milliseconds. */
  delayMs: number;
  /** Rate limit per direction, in bits per second (undefined: unlimited). */
  rateBitsPerSecond?: number;
}

/** A running proxy. */
export interface DelayProxy {
  readonly port: number;
  /** `tcp://127.0.0.1:PORT`, for DOCKER_HOST. */
  readonly url: string;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> =>
  ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();

/** Copies `from` to `to` chunk by chunk, each sent `delayMs` after it arrived, rate-bounded. */
async function pump(
  from: Deno.Conn,
  to: Deno.Conn,
  delayMs: number,
  bytesPerMs: number | undefined,
): Promise<void> {
  // Chunks are read as fast as they come and queued with their arrival time, so the delay does
  // not reduce throughput (a long fat pipe, as a real remote link).
  const queue: { at: number; data: Uint8Array }[] = [];
  let done = false;
  let wake: (() => void) | undefined;
  const reader = (async () => {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        queue.push({ at: performance.now(), data: buf.slice(0, n) });
        wake?.();
      }
    } catch {
      // connection reset: end this direction
    }
    done = true;
    wake?.();
  })();
  let nextFree = 0; // rate limit: when the link is free again
  try {
    for (;;) {
      const item = queue.shift();
      if (!item) {
        if (done) break;
        await new Promise<void>((r) => wake = r);
        wake = undefined;
        continue;
      }
      let due = item.at + delayMs;
      if (bytesPerMs !== undefined) {
        const start = Math.max(nextFree, performance.now());
        nextFree = start + item.data.length / bytesPerMs;
        due = Math.max(due, nextFree);
      }
      await sleep(due - performance.now());
      let off = 0;
      while (off < item.data.length) off += await to.write(item.data.subarray(off));
    }
  } catch {
    // peer gone
  }
  await reader;
  try {
    (to as Deno.TcpConn).closeWrite?.();
  } catch {
    // already closed
  }
}

async function dial(target: Target): Promise<Deno.Conn> {
  if (target.transport === "unix") {
    return await Deno.connect({ transport: "unix", path: target.path });
  }
  const conn = await Deno.connect({ hostname: target.hostname, port: target.port });
  conn.setNoDelay(true);
  return conn;
}

/** Starts the proxy; connections are served until `close()`. */
export function startDelayProxy(options: DelayProxyOptions): DelayProxy {
  const hostname = options.hostname ?? "127.0.0.1";
  if (!/^127\.|^localhost$|^::1$/.test(hostname)) {
    throw new Error(`Cannot listen on '${hostname}': the proxy serves loopback only`);
  }
  const listener = Deno.listen({ hostname, port: options.port ?? 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const bytesPerMs = options.rateBitsPerSecond === undefined
    ? undefined
    : options.rateBitsPerSecond / 8 / 1000;
  const conns = new Set<Deno.Conn>();
  const serving = (async () => {
    for await (const client of listener) {
      client.setNoDelay(true);
      conns.add(client);
      (async () => {
        let upstream: Deno.Conn | undefined;
        try {
          upstream = await dial(options.target);
          conns.add(upstream);
          await Promise.all([
            pump(client, upstream, options.delayMs, bytesPerMs),
            pump(upstream, client, options.delayMs, bytesPerMs),
          ]);
        } catch {
          // target unreachable: drop the client
        } finally {
          for (const c of [client, upstream]) {
            if (!c) continue;
            conns.delete(c);
            try {
              c.close();
            } catch {
              // already closed
            }
          }
        }
      })();
    }
  })().catch(() => {});
  return {
    port,
    url: `tcp://${hostname}:${port}`,
    async close(): Promise<void> {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await serving;
    },
  };
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

if (import.meta.main) {
  const args = Deno.args;
  const listen = flag(args, "--listen") ?? "127.0.0.1:2377";
  const [hostname, port] = listen.split(":");
  const rate = flag(args, "--rate-mbit");
  const proxy = startDelayProxy({
    hostname,
    port: Number(port),
    target: parseTarget(flag(args, "--to") ?? "unix:///var/run/docker.sock"),
    delayMs: Number(flag(args, "--delay-ms") ?? 25),
    rateBitsPerSecond: rate === undefined ? undefined : Number(rate) * 1e6,
  });
  console.error(`delay proxy on ${proxy.url}`);
}
