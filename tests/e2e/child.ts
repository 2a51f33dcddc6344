/**
 * A spawned CLI process as the tests watch it: its stderr gathered as text, whether it exited,
 * and a stop that sends a signal and waits.
 *
 * @module
 */

/** A watched child process. */
export interface WatchedChild {
  /** stderr so far. */
  stderr(): string;
  /** True once the process has exited. */
  exited(): boolean;
  readonly status: Promise<Deno.CommandStatus>;
  /**
   * Sends `signal` (if still running), waits for the exit (SIGKILL after `killAfterMs`, when
   * given) and for stderr to be read to its end; returns the exit code.
   */
  stop(signal?: Deno.Signal, killAfterMs?: number): Promise<number>;
  /** SIGKILL (if still running) and wait for the exit only, not for stderr's end. */
  kill(): Promise<void>;
}

/** Watches `child`, spawned with stderr piped (stdout, if piped, is discarded). */
export function watchChild(child: Deno.ChildProcess): WatchedChild {
  const decoder = new TextDecoder();
  let stderr = "";
  const pump = (async () => {
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  try {
    child.stdout.cancel().catch(() => {});
  } catch { /* stdout not piped */ }
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  return {
    stderr: () => stderr,
    exited: () => exited,
    status,
    async stop(signal: Deno.Signal = "SIGTERM", killAfterMs?: number): Promise<number> {
      if (!exited) child.kill(signal);
      const timer = killAfterMs === undefined
        ? undefined
        : setTimeout(() => !exited && child.kill("SIGKILL"), killAfterMs);
      const s = await status;
      clearTimeout(timer);
      await pump.catch(() => {});
      return s.code;
    },
    async kill(): Promise<void> {
      if (!exited) child.kill("SIGKILL");
      await status;
    },
  };
}
