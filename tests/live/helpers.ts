/**
 * Live view tests: a shell kept open inside the container (each command acknowledged once done,
 * so "the change was made" is known without a `docker exec` per change), and polling through
 * the mount.
 *
 * @module
 */

import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { docker, startMount } from "../e2e/harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `sh` running inside a container, fed commands one batch at a time. */
export class Inside {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #out = "";
  #err = "";
  #batch = 0;
  #wake: (() => void) | undefined;

  constructor(container: string) {
    const child = this.#child = new Deno.Command("docker", {
      args: ["exec", "-i", container, "sh"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = child.stdin.getWriter();
    (async () => {
      for await (const chunk of child.stdout) {
        this.#out += decoder.decode(chunk, { stream: true });
        this.#wake?.();
      }
    })();
    (async () => {
      for await (const chunk of child.stderr) this.#err += decoder.decode(chunk);
    })();
  }

  /** Runs `script` inside; resolves once it is done (throws after `ms`). */
  async run(script: string, ms = 30_000): Promise<void> {
    const marker = `__done_${++this.#batch}__`;
    await this.#writer.write(encoder.encode(`${script}\necho ${marker}\n`));
    const deadline = Date.now() + ms;
    while (!this.#out.includes(marker)) {
      if (Date.now() > deadline) {
        throw new Error(`the shell inside did not finish in ${ms} ms: ${this.#err}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.#out = this.#out.slice(this.#out.indexOf(marker) + marker.length);
  }

  async close(): Promise<void> {
    await this.#writer.close().catch(() => {});
    await this.#child.status;
  }
}

/** Milliseconds until `seen()` is true, polling every 2 ms; Infinity after `ms`. */
export async function until(seen: () => boolean | Promise<boolean>, ms = 5_000): Promise<number> {
  const start = performance.now();
  while (!(await seen())) {
    if (performance.now() - start > ms) return Infinity;
    await new Promise((r) => setTimeout(r, 2));
  }
  return performance.now() - start;
}

/** lstat that answers undefined for ENOENT. */
export async function lstatOrNone(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Sorted names of a directory. */
export async function names(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(path)) out.push(e.name);
  return out.sort();
}

/** The p-th percentile (0..100) of `values`. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export { docker };

/**
 * Runs `fn` on a mount (with `args`) of a fresh glibc container, a shell kept open inside it,
 * and the client's stderr; removes all three afterwards.
 */
export async function withContainer(
  tag: string,
  args: string[],
  fn: (mountpoint: string, inside: Inside, stderr: () => string) => Promise<void>,
): Promise<void> {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  const name = `dockerfuse-live-${tag}-${crypto.randomUUID().slice(0, 8)}`;
  const container = await startTestContainer(bed, "glibc", { name, args: ["sleep", "infinity"] });
  const m = await startMount("glibc", { container, args });
  const inside = new Inside(container);
  try {
    await fn(m.mountpoint, inside, m.stderr);
  } finally {
    await inside.close();
    await m.cleanup();
    await removeTestContainer(bed, container);
  }
}
