// Where a FUSE mount's requests spend their time, from the kernel's own tracepoints
// (fuse:fuse_request_send and fuse:fuse_request_end, Linux 6.15+): every request of one
// connection between `start` and `stop`, its opcode, and how long the kernel waited for its
// answer. Works for any FUSE filesystem (dockerfuse, sshfs), adds no logging to the one traced.
// Uses a tracefs instance of its own (removed by `stop`), so global tracing is left alone.
// Needs root and tracefs at /sys/kernel/tracing.

const TRACEFS = "/sys/kernel/tracing";
/** Per-CPU ring buffer of the instance: room for about 150,000 events per CPU. */
const BUFFER_KB = 16 * 1024;

/** One opcode's requests: how many, and what the kernel waited for their answers (µs). */
export interface OpcodeLatency {
  opcode: string;
  count: number;
  medianUs: number;
  totalUs: number;
}

/** What `stop` found: answered requests, unanswered ones (FORGET gets no answer), by opcode. */
export interface RequestProfile {
  answered: number;
  unanswered: number;
  /** Sum of every answered request's latency (µs); requests overlap, so not a wall time. */
  totalUs: number;
  /** Lost events (the ring buffer overran): the figures then miss some requests. */
  overrun: boolean;
  byOpcode: OpcodeLatency[];
}

/**
 * The kernel's dev_t (MKDEV: major << 20 | minor) of the filesystem mounted at `path`, as the
 * fuse tracepoints print a connection; `Deno.stat` gives the userspace encoding.
 */
export async function connectionOf(path: string): Promise<number> {
  const dev = (await Deno.stat(path)).dev;
  const major = ((dev >>> 8) & 0xfff) | Math.floor(dev / 2 ** 32) & ~0xfff;
  const minor = (dev & 0xff) | ((dev >>> 12) & ~0xff);
  return major * 2 ** 20 + minor;
}

/** Parses tracepoint lines of `connection` into a profile. */
export function profileOf(trace: string, connection: number): RequestProfile {
  const sent = new Map<string, { at: number; opcode: string }>();
  const latencies = new Map<string, number[]>();
  const line =
    /\s(\d+\.\d+): fuse_request_(send|end): connection (\d+) req (\d+)(?: opcode \d+ \((\w+)\))?/g;
  for (const m of trace.matchAll(line)) {
    if (Number(m[3]) !== connection) continue;
    const at = Number(m[1]) * 1e6;
    if (m[2] === "send") {
      sent.set(m[4], { at, opcode: (m[5] ?? "?").replace(/^FUSE_/, "") });
      continue;
    }
    const request = sent.get(m[4]);
    if (request === undefined) continue; // sent before the trace began
    sent.delete(m[4]);
    const us = at - request.at;
    const list = latencies.get(request.opcode) ?? [];
    list.push(us);
    latencies.set(request.opcode, list);
  }
  const byOpcode = [...latencies].map(([opcode, us]) => {
    us.sort((a, b) => a - b);
    return {
      opcode,
      count: us.length,
      medianUs: us[us.length >> 1],
      totalUs: us.reduce((a, b) => a + b, 0),
    };
  }).sort((a, b) => b.totalUs - a.totalUs);
  return {
    answered: byOpcode.reduce((n, o) => n + o.count, 0),
    unanswered: sent.size,
    totalUs: byOpcode.reduce((n, o) => n + o.totalUs, 0),
    overrun: false,
    byOpcode,
  };
}

/**
 * One line: "N requests answered in T ms together: OPCODE n × median µs = total ms, …" (the
 * `top` costliest opcodes).
 */
export function describeProfile(p: RequestProfile, top = 6): string {
  const ms = (us: number): string => (us / 1000).toFixed(us < 10_000 ? 1 : 0);
  const parts = p.byOpcode.slice(0, top).map((o) =>
    `${o.opcode} ${o.count} × ${Math.round(o.medianUs)} µs = ${ms(o.totalUs)} ms`
  );
  return `${p.answered} requests answered in ${ms(p.totalUs)} ms together${
    p.overrun ? " (events lost)" : ""
  }: ${parts.join(", ")}`;
}

/** A trace of FUSE requests under way (see the module's comment). */
export class FuseTrace {
  readonly #dir: string;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** Starts tracing every FUSE request; fails when tracefs or the tracepoints are missing. */
  static async start(): Promise<FuseTrace> {
    try {
      await Deno.stat(`${TRACEFS}/events/fuse/fuse_request_send`);
    } catch {
      throw new Error(
        `Cannot trace FUSE requests: no fuse tracepoints under ${TRACEFS} (needs root, tracefs ` +
          "mounted, Linux 6.15+)",
      );
    }
    const dir = `${TRACEFS}/instances/dockerfuse-bench-${Deno.pid}`;
    await Deno.mkdir(dir).catch((e) => {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    });
    await Deno.writeTextFile(`${dir}/buffer_size_kb`, `${BUFFER_KB}`);
    await Deno.writeTextFile(`${dir}/trace`, "");
    for (const event of ["fuse_request_send", "fuse_request_end"]) {
      await Deno.writeTextFile(`${dir}/events/fuse/${event}/enable`, "1");
    }
    return new FuseTrace(dir);
  }

  /** Stops tracing; the profile of the connection of the filesystem mounted at `mountpoint`. */
  async stop(mountpoint: string): Promise<RequestProfile> {
    try {
      for (const event of ["fuse_request_send", "fuse_request_end"]) {
        await Deno.writeTextFile(`${this.#dir}/events/fuse/${event}/enable`, "0");
      }
      const trace = await Deno.readTextFile(`${this.#dir}/trace`);
      const profile = profileOf(trace, await connectionOf(mountpoint));
      // The header says how many events the buffer holds of those written.
      const kept = trace.match(/entries-in-buffer\/entries-written: (\d+)\/(\d+)/);
      profile.overrun = kept !== null && kept[1] !== kept[2];
      return profile;
    } finally {
      await Deno.remove(this.#dir).catch(() => {});
    }
  }
}
