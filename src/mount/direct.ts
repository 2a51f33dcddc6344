/**
 * The direct channel to a satellite on the engine's own host. Asked to (`--listen`), the
 * satellite offers a Unix socket in its working directory, its private upload directory (mode
 * 0700), and says so in its hello; the client reaches it as `/proc/<pid>/cwd/<name>`, a magic
 * link to that very directory, so none of the container's paths (its symlinks) is resolved on
 * the way. The exec stream copies every byte through dockerd and containerd-shim (161 µs per
 * round trip here, against 15 µs for a Unix socket); it stays the satellite's lifeline and its
 * stderr. Where the socket cannot be reached (a remote engine, no pid, no right to the process's
 * /proc entries, the satellite could not listen), the session goes on over the exec stream.
 *
 * Invariants: the satellite's first frame on the exec stream is its hello, and it sends nothing
 * else there before the client chose: on the socket it answers a connection that proves the
 * secret with its hello again; on the exec stream the client's first request ends the offer.
 *
 * @module
 */

import { concatBytes, type ExecSession, withHead } from "../docker/mod.ts";
import {
  DIRECT_SOCKET_NAME,
  firstFrameLength,
  helloOfFrame,
  type RawConn,
} from "../protocol/mod.ts";

/**
 * Bytes of 64 KiB+ reads and writes in flight on the direct channel (the exec stream's 2 MiB,
 * `BULK_IN_FLIGHT_BYTES`, is sized for its latency and for remote engines'). Measured (bench rows
 * `read` and `busy`, 4 × 3 runs each): the 256 MiB read in 0.39–0.51 s with 1 MiB, 0.42–0.63 s
 * with 2 MiB; `stat` + `ls` meanwhile 17–20 ms with 1 MiB, 19–44 ms with 2 MiB.
 */
export const DIRECT_BULK_BYTES = 1 << 20;

/**
 * Where the RPC client reads and writes: the engine's exec stream, or the satellite's socket
 * (used directly, without web streams: see `RawConn`).
 */
export type Channel =
  | {
    readonly kind: "exec";
    readonly readable: ReadableStream<Uint8Array>;
    readonly writable: WritableStream<Uint8Array>;
    /** Why a direct channel offered was not taken. */
    readonly note?: string;
    /** Nothing: the exec session owns its stream. */
    close(): void;
  }
  | {
    readonly kind: "direct";
    readonly conn: RawConn;
    readonly note?: undefined;
    /** Closes the socket. */
    close(): void;
  };

/**
 * Reads the satellite's hello from the exec stream and takes the direct channel when it offers
 * one that this host reaches; else the exec stream, the hello left in it for the RPC client.
 */
export async function openChannel(exec: ExecSession): Promise<Channel> {
  const onExec = (readable: ReadableStream<Uint8Array>, note?: string): Channel => ({
    kind: "exec",
    readable,
    writable: exec.stdin,
    note,
    close() {},
  });
  const token = exec.directToken;
  if (token === undefined) return onExec(exec.stdout);
  const reader = exec.stdout.getReader();
  let head: Uint8Array = new Uint8Array(0);
  while (firstFrameLength(head) === undefined) {
    const { value, done } = await reader.read();
    if (done) break;
    head = concatBytes([head, value]);
  }
  const rest = withHead(head, reader);
  const length = firstFrameLength(head);
  const hello = length ? helloOfFrame(head.subarray(0, length)) : undefined;
  // Not a hello (the RPC client reports what it is), or no offer.
  if (hello?.direct !== true) return onExec(rest);
  if (exec.pid === undefined) return onExec(rest, "the satellite's process id is not known");
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({
      transport: "unix",
      path: `/proc/${exec.pid}/cwd/${DIRECT_SOCKET_NAME}`,
    });
  } catch (error) {
    return onExec(rest, `cannot connect to its socket: ${(error as Error).message}`);
  }
  try {
    const secret = new TextEncoder().encode(token);
    for (let done = 0; done < secret.length;) done += await conn.write(secret.subarray(done));
  } catch (error) {
    conn.close();
    return onExec(rest, `cannot write to its socket: ${(error as Error).message}`);
  }
  // The hello on the exec stream stays unread there: the satellite says it again on the socket.
  return {
    kind: "direct",
    conn,
    close() {
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}
