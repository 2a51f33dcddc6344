/**
 * Engine faults for the reliability tests: a TCP forwarder whose connections can be cut, and a
 * dockerd restart.
 *
 * @module
 */

import { alive, sleep } from "./helpers.ts";

/** A loopback forwarder to 127.0.0.1:`target`. */
export interface TcpForwarder {
  readonly port: number;
  /** Cuts every connection it has (and, with `refuseAfterDrop`, refuses new ones from then on). */
  dropAll(): void;
  close(): void;
}

/**
 * Starts a forwarder. A connection whose upstream cannot be reached is closed at once, as the
 * engine itself would refuse it.
 */
export function tcpForwarder(
  target: number,
  options: { refuseAfterDrop?: boolean } = {},
): TcpForwarder {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let refusing = false;
  (async () => {
    for await (const conn of listener) {
      if (refusing) {
        conn.close();
        continue;
      }
      conns.add(conn);
      (async () => {
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target }).catch(() => {
          conn.close();
          return undefined;
        });
        if (upstream === undefined) return;
        conns.add(upstream);
        await Promise.allSettled([
          conn.readable.pipeTo(upstream.writable),
          upstream.readable.pipeTo(conn.writable),
        ]);
      })().catch(() => {});
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    dropAll() {
      if (options.refuseAfterDrop) refusing = true;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      conns.clear();
    },
    close() {
      this.dropAll();
      try {
        listener.close();
      } catch { /* closed */ }
    },
  };
}

/** Restarts the dockerd listening on `unixHost`: SIGTERM, then the same command line again. */
export async function restartDockerd(unixHost: string): Promise<Deno.ChildProcess> {
  const dir = unixHost.replace(/^unix:\/\//, "").replace(/\/docker\.sock$/, "");
  const pid = Number((await Deno.readTextFile(`${dir}/docker.pid`)).trim());
  const argv = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0").filter((a) => a);
  Deno.kill(pid, "SIGTERM");
  for (let i = 0; i < 300 && await alive(pid); i++) await sleep(100);
  return new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/** Stops a child: SIGTERM, SIGKILL after 15 s. */
export async function stopProcess(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 15_000);
  await child.status;
  clearTimeout(timer);
}
