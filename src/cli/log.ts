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

/**
 * Characters a terminal acts on: C0 controls but tab, DEL, C1 controls (0x9b is CSI), line and
 * paragraph separators, bidirectional overrides and isolates.
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with every control character written as an escape (`\n`, `\r`, `\xHH`, `\uHHHH`):
 * text from the container (names, satellite messages) can neither break a log line nor send
 * sequences to the terminal.
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    if (c === "\n") return "\\n";
    if (c === "\r") return "\\r";
    return code < 0x80
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

/** A logger that writes one line per message, control characters escaped. */
export function createLogger(options: LoggerOptions): Logger {
  const sink = options.sink ?? Deno.stderr;
  const now = options.now ?? (() => new Date());
  const encoder = new TextEncoder();
  const write = (level: string, raw: string): void => {
    const message = escapeControl(raw);
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
