/**
 * The dockerfuse satellite: serves the protocol on stdin/stdout for one root directory.
 *
 *     satellite --root PATH [--self DIR [--listen]]
 *
 * `--self DIR` is deleted (recursively) as soon as the satellite runs: its own upload. Nothing
 * but protocol frames goes to stdout; diagnostics go to stderr. It exits when stdin closes.
 * `--listen` (with the secret in `DIRECT_TOKEN_ENV`): it also offers the direct channel, a
 * socket in DIR (its working directory meanwhile), until the client connects there (then it
 * serves that connection, stdin staying its lifeline) or sends its first request on stdin; DIR
 * is deleted then.
 * The loop is fully synchronous (poll(2), blocking reads and writes through libc, see loop.ts):
 * requests are handled in arrival order, responses batched per input chunk. Calls that may block
 * for long (reads, fsync, fallocate, copy_file_range) run on the I/O worker (workers.ts) and
 * are answered when it is done, while the loop goes on with the next requests.
 *
 * @module
 */

import {
  type Change,
  changesNames,
  DecodedRequest,
  DIRECT_TOKEN_ENV,
  Dispatcher,
  type Fatal,
  firstFrameLength,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  isAhead,
  isQuery,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  type WireResultOf,
} from "../src/protocol/mod.ts";
import { acceptProven, listenHere } from "./direct.ts";
import {
  AT_FDCWD,
  ERRNO,
  F_SETPIPE_SZ,
  O_CLOEXEC,
  O_PATH,
  RLIMIT_NOFILE,
} from "../src/linux/mod.ts";
import { SatelliteFs } from "./fs.ts";
import { openRootIn } from "./in_root.ts";
import { cString, Libc, num } from "./libc.ts";
import { Loop } from "./loop.ts";
import { warmUpWhenIdle } from "./warm_up.ts";
import { nodeBudgetFor, NodeHandles } from "./nodes.ts";
import { Watcher } from "./watch.ts";
import { IoPool, WORKER_BYTES } from "./workers.ts";
import {
  cgroupMemoryLimit,
  directFits,
  ioWorkersFit,
  memoryBudget,
  MemoryGuard,
  parseRssAnon,
  preferOomKill,
} from "./memory.ts";

/** Replaced by the packaging step with the bundle's build id. */
const BUILD_ID_SLOT: string = "@@DOCKERFUSE_BUILD_ID@@";
const BUILD_ID = BUILD_ID_SLOT.startsWith("@@") ? "dev" : BUILD_ID_SLOT;

const USAGE =
  "usage: satellite --root PATH [--root-in DIR] [--self DIR [--listen]] [--walk-paths]" +
  " [--node-budget N]";
const BATCH_BYTES = 256 * 1024;
/** A walk's answer when a change of names comes before it is served (`Order`, methods.ts). */
const NOTHING_WALKED: WireResultOf<"walk"> = { dirs: [], walked: 0 };
/** Longest a walk waits while queries sent after it are served (see `onFrame` in `main`). */
const WALK_WAIT_MS = 20;

function log(message: string): void {
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(`dockerfuse-satellite: ${message}\n`));
  } catch {
    // stderr gone: nothing to do
  }
}

/**
 * Raises the soft limit of open descriptors to the hard one (node handles are descriptors);
 * answers the soft limit in force after (Infinity when unlimited).
 */
function raiseFdLimit(libc: Libc): number {
  const lim = new BigUint64Array(2);
  const buf = new Uint8Array(lim.buffer);
  if (libc.fn.getrlimit(RLIMIT_NOFILE, buf) < 0) return 1024;
  if (lim[0] < lim[1]) {
    const soft = lim[0];
    lim[0] = lim[1];
    if (libc.fn.setrlimit(RLIMIT_NOFILE, buf) < 0) lim[0] = soft;
  }
  return lim[0] >= BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(lim[0]);
}

function parseArgs(
  args: string[],
): {
  root: string;
  rootIn?: string;
  self?: string;
  listen: boolean;
  walkPaths: boolean;
  nodeBudget?: number;
} | string {
  let root: string | undefined;
  let rootIn: string | undefined;
  let self: string | undefined;
  let listen = false;
  let walkPaths = false;
  let nodeBudget: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--root" && i + 1 < args.length) root = args[++i];
    else if (a === "--root-in" && i + 1 < args.length) rootIn = args[++i];
    else if (a === "--self" && i + 1 < args.length) self = args[++i];
    else if (a === "--listen") listen = true;
    else if (a === "--walk-paths") walkPaths = true; // resolve without openat2 (tests)
    else if (a === "--node-budget" && i + 1 < args.length) {
      nodeBudget = Number(args[++i]);
      if (!Number.isSafeInteger(nodeBudget) || nodeBudget < 0) {
        return `--node-budget must be a whole number, got '${args[i]}'`;
      }
    } else if (a === "--help" || a === "-h") return USAGE;
    else return `unexpected argument '${a}'\n${USAGE}`;
  }
  if (root === undefined) return `--root is required\n${USAGE}`;
  if (!root.startsWith("/")) return `--root must be an absolute path, got '${root}'`;
  if (listen && self === undefined) return `--listen needs --self\n${USAGE}`;
  return { root, rootIn, self, listen, walkPaths, nodeBudget };
}

/** Batches frames and writes them to `fd` (stdout, or the direct channel) with blocking writes. */
class Output {
  readonly #libc: Libc;
  readonly #batch = new Uint8Array(BATCH_BYTES);
  #fill = 0;
  broken = false;
  fd = 1;

  constructor(libc: Libc) {
    this.#libc = libc;
  }

  /** Queues a frame. Large frames are written before this returns (callers reuse them). */
  push(frame: Uint8Array): void {
    if (frame.length > BATCH_BYTES / 4) {
      this.flush();
      this.#write(frame);
      return;
    }
    if (this.#fill + frame.length > BATCH_BYTES) this.flush();
    this.#batch.set(frame, this.#fill);
    this.#fill += frame.length;
  }

  flush(): void {
    if (this.#fill === 0) return;
    const n = this.#fill;
    this.#fill = 0;
    this.#write(this.#batch.subarray(0, n));
  }

  #write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length && !this.broken) {
      const n = num(
        this.#libc.fn.write(
          this.fd,
          done ? bytes.subarray(done) : bytes,
          BigInt(bytes.length - done),
        ),
      );
      if (n < 0) {
        if (this.#libc.errno() === ERRNO.EINTR) continue;
        this.broken = true; // the client is gone
        return;
      }
      done += n;
    }
  }
}

function main(): number {
  const args = parseArgs(Deno.args);
  if (typeof args === "string") {
    log(args);
    return args === USAGE ? 0 : 2;
  }
  const libc = new Libc();
  // The direct channel's secret: read, then out of the environment.
  const secret = Deno.env.get(DIRECT_TOKEN_ENV);
  if (secret !== undefined) Deno.env.delete(DIRECT_TOKEN_ENV);
  const { guard, limit } = startMemoryGuard(libc);
  let listener = -1;
  // Not in a tight container (the memory line above says so).
  if (args.listen && secret !== undefined && args.self !== undefined && directFits(limit)) {
    try {
      Deno.chdir(args.self);
      listener = listenHere(libc);
    } catch (e) {
      log(`cannot enter ${args.self}: ${e instanceof Error ? e.message : e}`);
    }
    if (listener < 0) log(`not offering the direct channel (errno ${-listener})`);
  }
  /** What waits for the offer to end (the warm-up, below). */
  let afterOffer = (): void => {};
  /** Ends the offer of the direct channel, and deletes the upload (the socket's directory). */
  const endOffer = (): void => {
    if (listener < 0) return;
    loop.remove(listener);
    libc.fn.close(listener);
    listener = -1;
    try {
      Deno.chdir("/");
    } catch { /* the upload is deleted by its path */ }
    removeSelf(args.self!);
    afterOffer();
  };
  if (listener < 0 && args.self !== undefined) removeSelf(args.self);
  libc.fn.umask(0);
  // Larger pipes mean fewer context switches for 1 MiB reads (best effort).
  libc.fn.fcntl(0, F_SETPIPE_SZ, 1 << 20);
  libc.fn.fcntl(1, F_SETPIPE_SZ, 1 << 20);
  const out = new Output(libc);
  const loop = new Loop(libc);
  let status = 0;
  const end = (code: number): void => {
    status = code;
    loop.stop();
  };
  const io = new IoPool({
    libc,
    log,
    // A worker's memory is a fixed cost: collecting this heap cannot give it back.
    onWorkerStarted: () => guard.reserve(WORKER_BYTES),
    // Answers of completed jobs go out at once.
    watch: (fd, onReadable) =>
      loop.add(fd, () => {
        onReadable();
        out.flush();
        if (out.broken) end(0);
      }),
  });

  const rootIn = args.rootIn === undefined
    ? undefined
    : openRootIn(libc, args.rootIn, args.root, args.walkPaths);
  const rootFd = rootIn ?? libc.fn.openat(AT_FDCWD, cString(args.root)!, O_PATH | O_CLOEXEC, 0);
  const procFd = procFdPath();
  const fs = rootFd >= 0
    ? new SatelliteFs(libc, rootFd, {
      procFd,
      log,
      walkPaths: args.walkPaths,
      io: ioWorkersFit(limit) ? io : undefined,
      whenIdle: (fn) => loop.whenIdle(fn),
      nodes: new NodeHandles(
        args.nodeBudget ?? nodeBudgetFor(raiseFdLimit(libc)),
        (fd) => libc.fn.close(fd),
      ),
    })
    : undefined;
  // The change feed (started by the client's `watch`): its frames go out between responses.
  let eventFrame = (_changes: Change[]): Uint8Array | undefined => undefined;
  const watcher = fs && new Watcher(libc, fs, {
    emit: (changes) => {
      const frame = eventFrame(changes);
      if (frame) out.push(frame);
    },
    flush: () => out.flush(),
  }, { procFd, addSource: (fd, onReadable) => loop.add(fd, onReadable), log });
  let fatal: string | undefined;
  const dispatcher = new Dispatcher(
    watcher?.wrap(fs!.handlers()) ?? ({} as never),
    (method, error) => log(`${method}: ${error instanceof Error ? error.stack : error}`),
    (frame) => {
      if (fatal === undefined) out.push(frame);
    },
    // Every frame is pushed (copied, or written when large) before the next is made.
    { reuseFrames: true },
  );
  eventFrame = (changes) => dispatcher.eventFrame({ changes });
  if (!fs) {
    const errno = rootIn === undefined ? libc.errno() : -rootIn;
    const message = `Cannot open root '${args.root}'${
      args.rootIn === undefined ? "" : ` in '${args.rootIn}'`
    }: errno ${errno}`;
    log(message);
    out.push(dispatcher.fatalFrame(message));
    out.flush();
    return 1;
  }
  const hello = {
    protocol: PROTOCOL_VERSION,
    buildId: BUILD_ID,
    pid: Deno.pid,
    uid: libc.fn.geteuid(),
    gid: libc.fn.getegid(),
    arch: libc.arch,
    root: args.root,
    maxFrameBytes: MAX_FRAME_BYTES,
  };
  out.push(dispatcher.helloFrame(listener >= 0 ? { ...hello, direct: true } : hello));
  out.flush();
  // While the client mounts, the listing code is compiled ahead (warm_up.ts), then the first I/O
  // worker starts, so that the first read does not wait for it. Not while the direct channel is
  // offered: a listing moves the working directory (the xattr probe by name), where the client
  // finds the socket (/proc/<pid>/cwd); a client slow to connect (a busy host) found it gone.
  afterOffer = () =>
    warmUpWhenIdle(
      { whenIdle: (fn) => loop.whenIdle(fn), listAt: (path) => fs.listAt(path) },
      () => {
        if (ioWorkersFit(limit)) loop.whenIdle(() => io.prestart());
      },
    );
  if (listener < 0) afterOffer();

  const decoder = new FrameDecoder(MAX_FRAME_BYTES);
  // One input buffer for the whole run: complete frames are handed to the decoder as views into
  // it (it copies only frames split across its input), a partial frame moves to the front.
  const input = new Uint8Array(MAX_FRAME_BYTES + FRAME_HEADER_BYTES);
  let fill = 0;
  const answer = (response: Uint8Array | Fatal | undefined): void => {
    guard.tick(response instanceof Uint8Array ? response.length : 0);
    if (response === undefined) return; // answered later, by the I/O worker's completion
    if (response instanceof Uint8Array) {
      out.push(response);
    } else {
      fatal = response.fatal;
      out.push(response.frame);
    }
  };
  // Walks wait (their frames copied: the input buffer is reused) while the queries sent after
  // them are served (how methods are ordered: methods.ts); any other call runs them first. One
  // runs per idle turn of the loop, so a query read meanwhile waits for one walk at most; under
  // a steady stream of queries, one runs before the next query once the first has waited
  // WALK_WAIT_MS.
  const walks: Uint8Array[] = [];
  let walksSince = 0;
  let walkSoon = false;
  const serveWalk = (): void => {
    const body = walks.shift();
    if (body === undefined || fatal !== undefined) return;
    out.flush(); // the answers before it do not wait for it
    walksSince = performance.now();
    answer(dispatcher.handle(body));
  };
  const skipWalk = (): void => {
    const walk = dispatcher.decode(walks.shift()!);
    if (walk instanceof DecodedRequest && walk.method === "walk") {
      answer(dispatcher.answer(walk as DecodedRequest & { method: "walk" }, NOTHING_WALKED));
    } else answer(walk instanceof DecodedRequest ? dispatcher.run(walk) : walk);
  };
  const walkWhenIdle = (): void => {
    if (walkSoon || walks.length === 0) return;
    walkSoon = true;
    loop.whenIdle(() => {
      walkSoon = false;
      serveWalk();
      out.flush();
      if (out.broken) return end(0);
      walkWhenIdle();
    });
  };
  const onFrame = (body: Uint8Array): void => {
    if (fatal !== undefined) return;
    const request = dispatcher.decode(body);
    if (!(request instanceof DecodedRequest)) return answer(request);
    if (isAhead(request.method)) {
      if (walks.push(body.slice()) === 1) walksSince = performance.now();
      return walkWhenIdle();
    }
    if (walks.length > 0) {
      if (changesNames(request.method)) {
        // A change of names: the walks sent before it are answered empty (the client keeps
        // none of them now), not served.
        while (walks.length > 0 && fatal === undefined) skipWalk();
      } else if (!isQuery(request.method, request.params)) {
        // A change: the walks sent before it are served before it.
        while (walks.length > 0 && fatal === undefined) serveWalk();
      } else if (performance.now() - walksSince >= WALK_WAIT_MS) serveWalk();
    }
    answer(dispatcher.run(request));
  };
  // Requests: stdin, or the direct channel. Every frame of a read is handled before the next read.
  const onInput = (fd: number) => (): void => {
    const n = num(
      libc.fn.read(fd, fill ? input.subarray(fill) : input, BigInt(input.length - fill)),
    );
    if (n < 0) {
      if (libc.errno() === ERRNO.EINTR) return;
      log(`cannot read requests: errno ${libc.errno()}`);
      return end(0);
    }
    if (n === 0) return end(0); // client closed its end: done
    endOffer(); // a request on stdin: the client stays there
    fill += n;
    const whole = completeFrames(input, fill);
    const error = decoder.push(input.subarray(0, whole), onFrame);
    // Every frame was handled synchronously: the bytes are free to be overwritten.
    if (whole < fill) input.copyWithin(0, whole, fill);
    fill -= whole;
    if (error !== undefined && fatal === undefined) {
      fatal = error;
      out.push(dispatcher.fatalFrame(error));
    }
    out.flush();
    if (fatal !== undefined) {
      log(`protocol error: ${fatal}`);
      return end(3);
    }
    if (out.broken) end(0);
  };
  loop.add(0, onInput(0));
  if (listener >= 0) {
    const proven = secret!;
    loop.add(listener, () => {
      const fd = acceptProven(libc, listener, proven);
      if (fd < 0) return;
      endOffer();
      // From now on requests and answers travel on `fd`; stdin only tells when to end.
      const drain = new Uint8Array(4096);
      loop.add(0, () => {
        const n = num(libc.fn.read(0, drain, BigInt(drain.length)));
        if (n === 0 || (n < 0 && libc.errno() !== ERRNO.EINTR)) end(0);
      });
      loop.add(fd, onInput(fd));
      out.fd = fd;
      out.push(dispatcher.helloFrame(hello));
      out.flush();
    });
  }
  const pollError = loop.run();
  if (pollError !== undefined) log(`cannot poll: errno ${pollError}`);
  fs.closeAll();
  return status;
}

/** Reads the container's memory limit, raises oom_score_adj and starts the memory guard. */
function startMemoryGuard(libc: Libc): { guard: MemoryGuard; limit: number | undefined } {
  const readText = (path: string): string | undefined => {
    try {
      return Deno.readTextFileSync(path);
    } catch {
      return undefined;
    }
  };
  const limit = cgroupMemoryLimit(readText);
  const budget = memoryBudget(limit);
  log(
    `memory: container limit ${limit === undefined ? "none" : `${limit / 2 ** 20} MiB`}, ` +
      `satellite budget ${budget / 2 ** 20} MiB, ` +
      (ioWorkersFit(limit) ? "slow calls on I/O workers" : "slow calls inline (no I/O worker)") +
      (directFits(limit) ? "" : ", no direct channel"),
  );
  log(preferOomKill((path, text) => Deno.writeTextFileSync(path, text)));
  const gc = (globalThis as { gc?: () => void }).gc;
  const guard = new MemoryGuard(budget, {
    rssAnon: () => parseRssAnon(readText("/proc/self/status") ?? ""),
    // V8 frees dead ArrayBuffers' memory on a background thread after a full collection; the
    // next one finishes that first, so the trim sees it (external memory after one: 11 MiB after
    // a `find`, after two: 3.4).
    gc: gc
      ? () => {
        gc();
        gc();
      }
      : undefined,
    trim: () => libc.fn.malloc_trim(0n),
    log,
  });
  return { guard, limit };
}

/**
 * Bytes at the start of `buf[0, fill)` that form complete frames; all of `fill` when a header is
 * invalid (the decoder reports it). A partial frame always fits `buf` (one frame at most
 * MAX_FRAME_BYTES + header), so the next read has room.
 */
function completeFrames(buf: Uint8Array, fill: number): number {
  let pos = 0;
  for (;;) {
    const length = firstFrameLength(buf.subarray(pos, fill));
    if (length === undefined) return pos;
    if (length === 0) return fill;
    pos += length;
  }
}

/**
 * Deletes the upload directory. Only the directory holding this very script qualifies, so a
 * wrong argument can never delete anything else.
 */
function removeSelf(dir: string): void {
  const self = dir.replace(/\/+$/, "");
  const main = new URL(Deno.mainModule);
  const mainDir = main.protocol === "file:"
    ? decodeURIComponent(main.pathname).replace(/\/[^/]*$/, "")
    : undefined;
  if (self === "" || self !== mainDir) {
    log(`not removing ${dir}: it is not the directory of the running satellite (${mainDir})`);
    return;
  }
  try {
    Deno.removeSync(self, { recursive: true });
  } catch (e) {
    log(`cannot remove ${dir}: ${e instanceof Error ? e.message : e}`);
  }
}

function procFdPath(): string | undefined {
  try {
    Deno.statSync("/proc/self/fd");
    return "/proc/self/fd";
  } catch {
    log("/proc is not mounted: xattrs of regular files and directories only");
    return undefined;
  }
}

Deno.exit(main());
