/**
 * The satellite is a guest in the container: its memory counts against the container's limit.
 *
 * - The launch flags bound V8's heap (tasks/satellite/build.ts); request payloads are views into
 *   one input buffer and read replies reuse one buffer, so steady traffic allocates little.
 * - {@link MemoryGuard} keeps the anonymous resident memory under a budget derived from the
 *   container's cgroup limit: past it, a full GC and malloc_trim give memory back.
 * - {@link preferOomKill} makes the satellite the OOM killer's first choice in the container,
 *   so that if memory runs out anyway the user's processes survive.
 *
 * @module
 */

/** Anonymous memory the satellite aims to stay under without a (tight) container limit. */
export const DEFAULT_BUDGET = 24 * 1024 * 1024;
/** Never aim lower than this: the runtime alone takes about 13 MiB. */
export const MIN_BUDGET = 16 * 1024 * 1024;
/** Values of memory.limit_in_bytes at or above this mean "no limit" (cgroup v1). */
const NO_LIMIT = 2 ** 60;

/**
 * The container's memory limit in bytes as seen inside it (cgroup v2 memory.max, else v1
 * memory.limit_in_bytes); undefined when there is none or it cannot be read.
 */
export function cgroupMemoryLimit(
  read: (path: string) => string | undefined,
): number | undefined {
  for (
    const path of [
      "/sys/fs/cgroup/memory.max",
      "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
  ) {
    const text = read(path)?.trim();
    if (text === undefined || text === "") continue;
    if (text === "max") return undefined;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0) continue;
    return value >= NO_LIMIT ? undefined : value;
  }
  return undefined;
}

/** Smallest container memory limit at which slow calls get an I/O worker (about 8 MiB each). */
export const IO_WORKER_MIN_LIMIT = 256 * 1024 * 1024;

/**
 * Whether slow calls run on I/O workers in a container with this memory limit: not in a tight
 * one, where the satellite's memory matters more than a slow read holding up others.
 */
export function ioWorkersFit(limit: number | undefined): boolean {
  return limit === undefined || limit >= IO_WORKER_MIN_LIMIT;
}

/**
 * Whether the direct channel is offered in a container with this memory limit: not in a tight
 * one (under IO_WORKER_MIN_LIMIT). Served faster, the satellite makes garbage faster: in a 64 MiB
 * container its peak RssAnon over a 256 MiB write, a `find /usr` and the read back was 27.7–33.2
 * MiB in 9 runs on the direct channel, 26.9–30.1 MiB in 10 on the exec stream.
 */
export function directFits(limit: number | undefined): boolean {
  return ioWorkersFit(limit);
}

/** The anonymous-memory budget for a container limit: a quarter of it, within bounds. */
export function memoryBudget(limit: number | undefined): number {
  if (limit === undefined) return DEFAULT_BUDGET;
  return Math.max(MIN_BUDGET, Math.min(DEFAULT_BUDGET, Math.floor(limit / 4)));
}

/** Parses RssAnon (bytes) out of /proc/self/status text; undefined when absent. */
export function parseRssAnon(status: string): number | undefined {
  const match = /^RssAnon:\s+(\d+) kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : undefined;
}

/**
 * Asks the kernel to pick this process first when the container runs out of memory. Returns
 * the line to log.
 */
export function preferOomKill(write: (path: string, text: string) => void): string {
  try {
    write("/proc/self/oom_score_adj", "1000");
    return "oom_score_adj 1000: if the container runs out of memory, the kernel ends the " +
      "satellite rather than the container's processes (the mount then fails; exit code 137)";
  } catch (error) {
    return `cannot raise oom_score_adj (${(error as Error).message}): the kernel may pick ` +
      "a container process before the satellite when memory runs out";
  }
}

/** What {@link MemoryGuard} acts through (injected). */
export interface MemoryGuardDeps {
  /** Current anonymous resident memory in bytes (undefined: unknown). */
  rssAnon(): number | undefined;
  /** A full garbage collection (undefined when the runtime does not expose one). */
  gc?: () => void;
  /** Returns free heap memory to the kernel (malloc_trim). */
  trim(): void;
  log(message: string): void;
}

/** Checks every this many requests (reading /proc/self/status costs ~20 µs)… */
const CHECK_EVERY = 64;
/**
 * …or sooner, after answers of this many bytes: a walk's answer (up to 768 KiB) makes about
 * as much garbage, and a `find` asks few of them (counted by requests only, RssAnon grew from
 * 15 to 33 MiB between two checks in a 64 MiB container).
 */
const CHECK_BYTES = 1024 * 1024;

/**
 * Keeps RssAnon under a budget: every {@link CHECK_EVERY} requests or {@link CHECK_BYTES} bytes
 * answered, past the budget, collects
 * garbage and trims the heap. When that cannot get below the budget (the memory is live), the
 * threshold moves up to what is in use plus a margin, so the guard never collects in a loop.
 */
export class MemoryGuard {
  readonly #deps: MemoryGuardDeps;
  #budget: number;
  #threshold: number;
  #count = 0;
  #bytes = 0;
  /** Collections run (for tests and diagnostics). */
  collections = 0;

  constructor(budget: number, deps: MemoryGuardDeps) {
    this.#budget = budget;
    this.#threshold = budget;
    this.#deps = deps;
  }

  /**
   * Adds `bytes` of fixed cost to the budget (an I/O worker's isolate and job ring: memory no
   * collection of this thread's heap can give back).
   */
  reserve(bytes: number): void {
    this.#budget += bytes;
    this.#threshold = Math.max(this.#threshold, this.#budget);
  }

  /** Counts one request and the bytes of its answer; may collect. */
  tick(answerBytes = 0): void {
    this.#bytes += answerBytes;
    if (++this.#count < CHECK_EVERY && this.#bytes < CHECK_BYTES) return;
    this.#count = 0;
    this.#bytes = 0;
    this.check();
  }

  /** Collects if RssAnon is past the threshold. */
  check(): void {
    const before = this.#deps.rssAnon();
    if (before === undefined || before <= this.#threshold) return;
    this.#deps.gc?.();
    this.#deps.trim();
    this.collections++;
    const after = this.#deps.rssAnon() ?? before;
    if (after > this.#budget) {
      const threshold = after + MIN_BUDGET / 4;
      if (threshold > this.#threshold) {
        this.#deps.log(
          `memory: ${mib(after)} MiB in use after a collection, above the budget of ` +
            `${mib(this.#budget)} MiB`,
        );
      }
      this.#threshold = threshold;
    } else {
      this.#threshold = this.#budget;
    }
  }
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
