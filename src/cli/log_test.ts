import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { createLogger } from "./log.ts";

function capture(
  format: "text" | "json",
): { lines: () => string[]; log: ReturnType<typeof createLogger> } {
  const chunks: Uint8Array[] = [];
  const log = createLogger({
    format,
    debug: true,
    now: () => new Date("2026-01-02T03:04:05.000Z"),
    sink: { writeSync: (b) => (chunks.push(b.slice()), b.length) },
  });
  const lines = () =>
    chunks.map((c) => new TextDecoder().decode(c)).join("").split("\n").slice(0, -1);
  return { lines, log };
}

/** Text from a container: an escape sequence, a second "log line", C1 CSI, DEL, a bell. */
const HOSTILE = "name\x1b[2J\x1b]0;pwned\x07\nFAKE error injected\r\u009b31m\x7f\tend";

/** True when `s` holds a character a terminal would act on (C0 but tab, DEL, C1). */
function hasControl(s: string): boolean {
  // deno-lint-ignore no-control-regex
  return /[\x00-\x08\x0a-\x1f\x7f-\x9f]/.test(s);
}

Deno.test("text logs escape control characters: one line per message, nothing for the terminal", () => {
  const { lines, log } = capture("text");
  log.error(`Cannot mount '${HOSTILE}': gone`);
  const out = lines();
  strictEqual(out.length, 1, JSON.stringify(out));
  ok(!hasControl(out[0]), JSON.stringify(out[0]));
  strictEqual(
    out[0],
    "2026-01-02T03:04:05.000Z error Cannot mount 'name\\x1b[2J\\x1b]0;pwned\\x07\\nFAKE error " +
      "injected\\r\\u009b31m\\x7f\tend': gone",
  );
});

Deno.test("json logs stay valid JSON and carry the escaped text", () => {
  const { lines, log } = capture("json");
  log.warn(HOSTILE);
  const out = lines();
  strictEqual(out.length, 1);
  ok(!hasControl(out[0]), out[0]);
  const parsed = JSON.parse(out[0]);
  deepStrictEqual(Object.keys(parsed), ["time", "level", "msg"]);
  strictEqual(parsed.level, "warn");
  // jq -r prints msg raw: it must hold no control characters either
  ok(!hasControl(parsed.msg), JSON.stringify(parsed.msg));
  strictEqual(
    parsed.msg,
    "name\\x1b[2J\\x1b]0;pwned\\x07\\nFAKE error injected\\r\\u009b31m\\x7f\tend",
  );
});

Deno.test("plain messages are unchanged", () => {
  const { lines, log } = capture("text");
  log.info("Mounted 'c:/' on '/mnt/ü' in 12 ms");
  strictEqual(lines()[0], "2026-01-02T03:04:05.000Z info  Mounted 'c:/' on '/mnt/ü' in 12 ms");
});
