/**
 * The client's JIT warm-up, run once a new mount is idle: the walking paths of the client —
 * frames and records decoded by the RpcClient, ContainerFs's listings, walks ahead and caches,
 * the Session's READDIRPLUS replies and node table — run over a synthetic tree, so that V8 has
 * compiled them before the user's first walk (see src/fuse/warm_up.ts for the script). Measured
 * (cold `find` of 6,000 entries a second after mounting, 4 runs each): 0.315–0.322 s and 14–19
 * ticks of client CPU without, 0.248–0.293 s and 10–13 ticks with. Run while the satellite
 * started instead, it made the mount 150–250 ms slower: on two cores that time is not idle.
 *
 * The tree is answered in process by a stand-in for the satellite built on the protocol's own
 * Dispatcher, over in-memory streams: nothing reaches the container, the kernel or the disk.
 * Every object of a round (client, filesystem, session) is dropped at its end.
 *
 * @module
 */

import { ContainerFs, type KernelCaches } from "../fs/mod.ts";
import { type Logger, warmUp, type WarmUpPace, type WarmUpStats } from "../fuse/mod.ts";
import {
  type Change,
  ChangeKind,
  Dispatcher,
  type EntryList,
  FrameDecoder,
  type Handlers,
  inodeKey,
  isMethodName,
  MAX_FRAME_BYTES,
  METHODS,
  PROTOCOL_VERSION,
  RECORD_BYTES,
  RecordWriter,
  RpcClient,
  RpcFailure,
  type Stat,
  writeStat,
} from "../protocol/mod.ts";
import { DT_DIR, DT_LNK, DT_REG, S_IFDIR, S_IFLNK, S_IFREG } from "../linux/mod.ts";
import type { LayerOptions } from "./options.ts";

/** Name of the synthetic tree's top directory, under the root. */
const TOP = "warm-up";
/** Directories under the top, and what each holds: files, symlinks, one subdirectory. */
const DIRS = 6;
const FILES = 240;
const LINKS = 10;
const SUB_FILES = 40;
/** Rounds of the script, each over a fresh client, filesystem and session. */
export const WARM_UP_ROUNDS = 4;

/** One directory of the synthetic tree, its listing packed once as the satellite sends it. */
interface SynthDir {
  readonly stat: Stat;
  readonly list: EntryList;
  /** Subdirectories by name. */
  readonly dirs: Map<string, SynthDir>;
  /** Every entry's Stat by name. */
  readonly stats: Map<string, Stat>;
}

/** The next inode number of the tree being built. */
interface Inos {
  next: bigint;
}

function stat(inos: Inos, mode: number, size: number): Stat {
  return {
    ino: inos.next++,
    mode,
    nlink: (mode & S_IFDIR) === S_IFDIR ? 2 : 1,
    uid: 0,
    gid: 0,
    rdevMajor: 0,
    rdevMinor: 0,
    devMajor: 0,
    devMinor: 1,
    size: BigInt(size),
    blocks: BigInt(Math.ceil(size / 512)),
    blksize: 4096,
    atimeSec: 1_700_000_000,
    atimeNsec: 0,
    mtimeSec: 1_700_000_000,
    mtimeNsec: 123_456_789,
    ctimeSec: 1_700_000_000,
    ctimeNsec: 123_456_789,
    hasXattrs: false,
  };
}

/** A directory of `entries` (name, Stat, d_type, symlink target). */
function dir(
  inos: Inos,
  entries: readonly { name: string; stat: Stat; type: number; target?: string; dir?: SynthDir }[],
): SynthDir {
  const writer = new RecordWriter();
  const record = new Uint8Array(RECORD_BYTES);
  const view = new DataView(record.buffer);
  const names: string[] = [];
  const targets: (string | null)[] = [];
  const dirs = new Map<string, SynthDir>();
  const stats = new Map<string, Stat>();
  // "." and ".." first, without attributes, as getdents64 gives them to the satellite.
  for (const dot of [".", ".."]) {
    writer.add(inos.next, DT_DIR, BigInt(names.length + 1));
    names.push(dot);
    targets.push(null);
  }
  for (const e of entries) {
    writeStat(view, 0, e.stat);
    writer.add(
      e.stat.ino,
      e.type,
      BigInt(names.length + 1),
      record,
      false,
    );
    names.push(e.name);
    targets.push(e.target ?? null);
    stats.set(e.name, e.stat);
    if (e.dir !== undefined) dirs.set(e.name, e.dir);
  }
  return {
    stat: stat(inos, S_IFDIR | 0o755, 4096),
    list: { names, records: writer.bytes().slice(), targets },
    dirs,
    stats,
  };
}

function files(inos: Inos, count: number): { name: string; stat: Stat; type: number }[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `file-${String(i).padStart(3, "0")}.txt`,
    stat: stat(inos, S_IFREG | 0o644, 100 + i),
    type: DT_REG,
  }));
}

/** The tree: the root, holding the top directory. */
function tree(): SynthDir {
  const inos: Inos = { next: 1000n };
  const subdirs = Array.from({ length: DIRS }, (_, d) => {
    const sub = dir(inos, files(inos, SUB_FILES));
    const links = Array.from({ length: LINKS }, (_, i) => ({
      name: `link-${i}`,
      stat: stat(inos, S_IFLNK | 0o777, 12),
      type: DT_LNK,
      target: "file-000.txt",
    }));
    return {
      name: `dir-${d}`,
      entry: dir(inos, [
        ...files(inos, FILES),
        ...links,
        { name: `sub-${d}`, stat: sub.stat, type: DT_DIR, dir: sub },
      ]),
    };
  });
  const top = dir(
    inos,
    subdirs.map((s) => ({ name: s.name, stat: s.entry.stat, type: DT_DIR, dir: s.entry })),
  );
  return dir(inos, [{ name: TOP, stat: top.stat, type: DT_DIR, dir: top }]);
}

/** The directory or entry at `path` (from the root; the stand-in gives no node handles). */
function resolve(root: SynthDir, path: string | Uint8Array): { dir?: SynthDir; stat?: Stat } {
  if (typeof path !== "string") return {};
  let d: SynthDir = root;
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  for (let i = 0; i < parts.length; i++) {
    const sub = d.dirs.get(parts[i]);
    if (sub !== undefined) {
      d = sub;
      continue;
    }
    return i === parts.length - 1 ? { stat: d.stats.get(parts[i]) } : {};
  }
  return { dir: d, stat: d.stat };
}

/** Entries [from, to) of a listing. */
function slice(list: EntryList, from: number, to: number): EntryList {
  return {
    names: list.names.slice(from, to),
    records: list.records.subarray(from * RECORD_BYTES, to * RECORD_BYTES),
  };
}

/**
 * The kernel as the change feed's invalidations reach it: nothing to invalidate (the session's
 * requests are the script's), no node known by key.
 */
const NO_KERNEL: KernelCaches = {
  invalidateEntry: () => Promise.resolve(true),
  invalidateInode: () => Promise.resolve(true),
  storeData: () => Promise.resolve(true),
  nodeOf: () => undefined,
  childOf: () => undefined,
  knownNodes: () => [],
};

/**
 * The stand-in satellite's handlers over `root`; methods it does not need answer ENOSYS. Like
 * the satellite, it watches each directory it lists and says so (`notify`, WATCHED) before the
 * listing: a mount's entries then come with the feed's long timeouts, and those paths are the
 * ones compiled.
 */
function handlers(root: SynthDir, notify: (changes: Change[]) => void): Handlers {
  const watched = (d: SynthDir): void =>
    notify([{ dir: inodeKey(d.stat), what: ChangeKind.WATCHED }]);
  const open = new Map<number, SynthDir>();
  let nextHandle = 1;
  const enoent = new RpcFailure("ENOENT");
  const all: Record<string, unknown> = {};
  for (const method of Object.keys(METHODS)) {
    if (isMethodName(method)) all[method] = () => new RpcFailure("ENOSYS");
  }
  const given: Partial<Handlers> = {
    lstat: ({ path }) => resolve(root, path).stat ?? enoent,
    lookup: ({ path }) => {
      const found = resolve(root, path).stat;
      return found === undefined ? enoent : { stat: found };
    },
    forget: () => null,
    watch: () => {
      notify([{ dir: inodeKey(root.stat), name: "", what: ChangeKind.WATCHED }]);
      return { root: inodeKey(root.stat) };
    },
    unwatch: () => null,
    opendir: ({ path, readAhead }) => {
      const d = resolve(root, path).dir;
      if (d === undefined) return enoent;
      watched(d);
      const handle = nextHandle++;
      open.set(handle, d);
      if (readAhead === undefined) return { handle };
      const n = Math.min(readAhead, d.list.names.length);
      return { handle, entries: slice(d.list, 0, n), eof: n === d.list.names.length };
    },
    readdir: ({ handle, offset, maxEntries }) => {
      const d = open.get(handle);
      if (d === undefined) return new RpcFailure("EBADF");
      const from = Math.min(Number(offset), d.list.names.length);
      const to = Math.min(d.list.names.length, from + (maxEntries ?? 1024));
      return { entries: slice(d.list, from, to), eof: to === d.list.names.length };
    },
    fstat: ({ handle }) => open.get(handle)?.stat ?? new RpcFailure("EBADF"),
    release: ({ handle }) => {
      open.delete(handle);
      return null;
    },
    walk: ({ paths, maxEntries }) => {
      const dirs: { path: string; self: Stat; entries: EntryList }[] = [];
      let entries = 0;
      let walked = 0;
      const visit = (path: string, d: SynthDir): boolean => {
        if (dirs.length > 0 && entries + d.list.names.length > maxEntries) return false;
        watched(d);
        dirs.push({ path, self: d.stat, entries: d.list });
        entries += d.list.names.length;
        for (const [name, sub] of d.dirs) {
          if (!visit(path === "/" ? `/${name}` : `${path}/${name}`, sub)) return false;
        }
        return true;
      };
      for (const path of paths) {
        const d = resolve(root, path).dir;
        if (typeof path !== "string" || d === undefined) break;
        if (!visit(path, d)) break;
        walked++;
      }
      return { dirs, walked };
    },
  };
  return { ...all, ...given } as Handlers;
}

/** Passes what the warm-up's layers log to `logger` as debug lines. */
function quiet(logger: Logger): Logger {
  const say = (m: string): void => logger.debug(`warm-up: ${m}`);
  return { debug: () => {}, info: say, warn: say, error: say };
}

/** One round: a client and a filesystem over a fresh stand-in, walked by the script. */
async function round(
  root: SynthDir,
  layers: LayerOptions,
  logger: Logger,
  pace: WarmUpPace,
): Promise<WarmUpStats> {
  const toSatellite = new TransformStream<Uint8Array, Uint8Array>();
  const fromSatellite = new TransformStream<Uint8Array, Uint8Array>();
  const writer = fromSatellite.writable.getWriter();
  const answer = (frame: Uint8Array): void => void writer.write(frame).catch(() => {});
  let notify = (_changes: Change[]): void => {};
  const dispatcher = new Dispatcher(handlers(root, (changes) => notify(changes)));
  notify = (changes) => answer(dispatcher.eventFrame({ changes }));
  answer(dispatcher.helloFrame({
    protocol: PROTOCOL_VERSION,
    buildId: "warm-up",
    pid: 0,
    uid: 0,
    gid: 0,
    arch: layers.fs.hostArch,
    root: "/",
    maxFrameBytes: MAX_FRAME_BYTES,
  }));
  const served = (async () => {
    const decoder = new FrameDecoder();
    for await (const chunk of toSatellite.readable) {
      decoder.push(chunk, (body) => {
        const r = dispatcher.handle(body);
        if (r !== undefined) answer(r instanceof Uint8Array ? r.slice() : r.frame);
      });
    }
    await writer.close().catch(() => {});
  })();
  let fs: ContainerFs | undefined;
  const client = new RpcClient(fromSatellite.readable, toSatellite.writable, {
    timeoutMs: 0,
    onEvent: (changes) => fs?.onChanges(changes),
  });
  try {
    await client.ready;
    fs = new ContainerFs(client.call, { ...layers.fs, logger: quiet(logger) });
    if (layers.fs.live !== undefined) fs.attachKernel(NO_KERNEL);
    return await warmUp(fs, TOP, { ...layers.fuse, logger: quiet(logger) }, pace);
  } finally {
    await client.close("warm-up done", 0);
    await served.catch(() => {});
  }
}

/**
 * Runs the warm-up, `rounds` rounds or until `pace.stop` says so, with the mount's layer
 * options; resolves with what each round did. Never rejects: a failure is only logged (the mount
 * works the same, colder).
 */
export async function warmUpClient(
  layers: LayerOptions,
  logger: Logger,
  pace: WarmUpPace = {},
  rounds = WARM_UP_ROUNDS,
): Promise<WarmUpStats[]> {
  const done: WarmUpStats[] = [];
  try {
    const root = tree();
    for (let i = 0; i < rounds && pace.stop?.() !== true; i++) {
      done.push(await round(root, layers, logger, pace));
    }
  } catch (error) {
    logger.debug(`warm-up failed (the mount is not affected): ${error}`);
  }
  return done;
}

/** Milliseconds without a kernel request after which a new mount warms up. */
export const WARM_UP_IDLE_MS = 250;

/**
 * Runs the warm-up once `fuse` has had no request for WARM_UP_IDLE_MS, until its next request
 * or `signal` (the mount ends). A walk begun right after mounting is not slowed by it (measured:
 * a warm-up cut short by the walk's first request made that walk slower, 0.370 s against 0.319).
 */
export function warmUpWhenIdle(
  fuse: { readonly requests: number },
  layers: LayerOptions,
  logger: Logger,
  signal: AbortSignal,
  idleMs = WARM_UP_IDLE_MS,
): Promise<WarmUpStats[]> {
  return new Promise((resolve) => {
    let seen = fuse.requests;
    const check = (): void => {
      if (signal.aborted) return resolve([]);
      if (fuse.requests !== seen) {
        seen = fuse.requests;
        setTimeout(check, idleMs);
        return;
      }
      const asked = seen;
      resolve(
        warmUpClient(layers, logger, { stop: () => fuse.requests !== asked || signal.aborted })
          .then((rounds) => {
            logger.debug(`warm-up: ${rounds.length} round(s) ${JSON.stringify(rounds)}`);
            return rounds;
          }),
      );
    };
    setTimeout(check, idleMs);
  });
}
