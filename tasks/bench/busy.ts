/**
 * Latency of small requests while a bulk read streams through the same mount (issue 14): the
 * time of a `stat FILE` and an `ls DIR` (the same system calls, made by this process: stat(2),
 * then open, getdents64 until the end, close; no process is started, so the figure is the
 * filesystem's, not fork/exec's on a busy machine) while `cat BIG >/dev/null` loops in the
 * background, the host page cache dropped before every cat (every pass goes to the container).
 *
 * Shared by the e2e benchmark's "stat + ls while streaming" row and the e2e test.
 *
 * @module
 */

/** What to measure and how often. */
export interface BusyOptions {
  /** The big file streamed in the background (a path on the mount). */
  big: string;
  /** The file `stat`ed. */
  stat: string;
  /** The directory listed. */
  list: string;
  /** Timed samples. */
  samples: number;
  /** Pause between samples in milliseconds (the kernel's caches expire meanwhile). */
  gapMs?: number;
}

/** The samples in milliseconds, and how many full passes of `cat` ran meanwhile. */
export interface BusyResult {
  readonly ms: number[];
  readonly median: number;
  readonly passes: number;
}

const decoder = new TextDecoder();

/** Median of numbers (mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Runs the background stream and the timed samples; the stream is stopped whatever happens.
 * Needs root (drop_caches). A sample whose commands fail throws.
 */
export async function measureWhileStreaming(o: BusyOptions): Promise<BusyResult> {
  const loop = new Deno.Command("sh", {
    args: [
      "-c",
      // The cat runs in the background so that SIGTERM (trapped while waiting) can end it.
      "c=; trap '[ -n \"$c\" ] && kill $c 2>/dev/null; exit 0' TERM; n=0; " +
      "while :; do sync; echo 3 > /proc/sys/vm/drop_caches; " +
      'cat "$BIG" >/dev/null & c=$!; wait $c || exit 1; c=; n=$((n+1)); echo "$n"; done',
    ],
    env: { BIG: o.big },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let passes = 0;
  let stderr = "";
  const pump = (async () => {
    for await (const c of loop.stdout) {
      const lines = decoder.decode(c).trim().split("\n");
      passes = Number(lines[lines.length - 1]) || passes;
    }
  })();
  const pumpErr = (async () => {
    for await (const c of loop.stderr) stderr += decoder.decode(c);
  })();
  let exited = false;
  const status = loop.status.then((s) => (exited = true, s));
  const ms: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 500)); // the stream is under way
    for (let i = 0; i < o.samples; i++) {
      if (exited) throw new Error(`the background cat ended: ${stderr}`);
      const t0 = performance.now();
      await Deno.stat(o.stat);
      let entries = 0;
      for await (const _ of Deno.readDir(o.list)) entries++;
      const t = performance.now() - t0;
      if (entries === 0) throw new Error(`${o.list} listed no entries`);
      ms.push(t);
      await new Promise((r) => setTimeout(r, o.gapMs ?? 150 + Math.random() * 100));
    }
  } finally {
    if (!exited) loop.kill("SIGTERM");
    await status;
    await pump.catch(() => {});
    await pumpErr.catch(() => {});
  }
  return { ms, median: median(ms), passes };
}
