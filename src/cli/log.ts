/** Log lines to stderr, as text or JSON; `debug` lines only when asked. */

import type { Logger } from "../fuse/mod.ts";

/** Where log lines go (stderr by default; a file for a daemon). */
export interface LogSink {
  writeSync(bytes: Uint8Array): number;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  format: "text" | "json";
  debug: boolean;
  sink?: LogSink;
  /** Clock for timestamps (injected for tests). */
  now?: () => Date;
}

/** A logger that writes one line per message. */
export function createLogger(options: LoggerOptions): Logger {
  const sink = options.sink ?? Deno.stderr;
  const now = options.now ?? (() => new Date());
  const encoder = new TextEncoder();
  const write = (level: string, message: string): void => {
    const line = options.format === "json"
      ? JSON.stringify({ time: now().toISOString(), level, msg: message })
      : `${now().toISOString()} ${level.padEnd(5)} ${message}`;
    try {
      sink.writeSync(encoder.encode(line + "\n"));
    } catch {
      // A closed log sink must never take the filesystem down.
    }
  };
  return {
    debug: (m) => options.debug && write("debug", m),
    info: (m) => write("info", m),
    warn: (m) => write("warn", m),
    error: (m) => write("error", m),
  };
}
