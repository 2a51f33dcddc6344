/** A one-line upload progress bar for terminals, shown only for uploads longer than a moment. */

/** Options of {@link progressBar}. */
export interface ProgressOptions {
  /** Milliseconds before the bar appears (short uploads show nothing). */
  delayMs?: number;
  out?: { writeSync(bytes: Uint8Array): number };
  now?: () => number;
}

/** Returns an `onProgress(sent, total)` callback drawing a bar on `out` (stderr). */
export function progressBar(options: ProgressOptions = {}): (sent: number, total: number) => void {
  const out = options.out ?? Deno.stderr;
  const now = options.now ?? (() => performance.now());
  const delay = options.delayMs ?? 300;
  const encoder = new TextEncoder();
  const start = now();
  let shown = false;
  let drawn = -1;
  return (sent, total) => {
    if (!shown && now() - start < delay && sent < total) return;
    if (!shown && sent >= total && now() - start < delay) return;
    shown = true;
    const fraction = total > 0 ? Math.min(1, sent / total) : 1;
    const width = 30;
    const filled = Math.round(fraction * width);
    const percent = Math.floor(fraction * 100);
    if (percent === drawn) return; // redraw only when the figure changes
    drawn = percent;
    const mib = (n: number): string => (n / (1 << 20)).toFixed(1);
    const line = `\rUploading satellite [${"#".repeat(filled)}${" ".repeat(width - filled)}] ` +
      `${mib(sent)}/${mib(total)} MiB`;
    out.writeSync(encoder.encode(line + (sent >= total ? "\n" : "")));
  };
}
