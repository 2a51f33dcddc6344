/**
 * Test harness: a satellite started from source over pipes, against a host directory.
 *
 * @module
 */

import { RpcClient } from "../../src/protocol/mod.ts";

export { errnoOf, valueOf } from "../../src/protocol/_test_utils.ts";

const SATELLITE = new URL("../../satellite/main.ts", import.meta.url);

/** A running satellite and its client. */
export interface Harness {
  readonly client: RpcClient;
  readonly child: Deno.ChildProcess;
  readonly stderr: Promise<string>;
  /** Methods answered so far, in order of their answers. */
  readonly calls: string[];
  /** Closes the client and waits for the satellite to exit; returns its exit code. */
  stop(): Promise<number>;
}

/** Options of {@link startSatellite}. */
export interface StartOptions {
  /** Run as this user (through setpriv); root otherwise. */
  user?: { uid: number; gid: number };
  /** DENO_DIR for a satellite run as another user (must be writable by it). */
  denoDir?: string;
  /** Extra satellite arguments. */
  args?: string[];
}

/** Starts `deno run satellite/main.ts --root <root>` and connects a client. */
export function startSatellite(root: string, options: StartOptions = {}): Harness {
  const satArgs = [
    "run",
    "-A",
    "--no-lock",
    SATELLITE.pathname,
    "--root",
    root,
    ...(options.args ?? []),
  ];
  const command = options.user
    ? new Deno.Command("setpriv", {
      args: [
        `--reuid=${options.user.uid}`,
        `--regid=${options.user.gid}`,
        "--clear-groups",
        Deno.execPath(),
        ...satArgs,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: options.denoDir ? { DENO_DIR: options.denoDir } : {},
    })
    : new Deno.Command(Deno.execPath(), {
      args: satArgs,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
  const child = command.spawn();
  const calls: string[] = [];
  const client = new RpcClient(child.stdout, child.stdin, {
    onTrace: (event) => calls.push(event.method),
  });
  const stderr = new Response(child.stderr).text();
  return {
    client,
    child,
    stderr,
    calls,
    async stop() {
      await client.close();
      const status = await child.status;
      await stderr;
      return status.code;
    },
  };
}
