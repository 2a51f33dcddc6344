/**
 * Helpers for tests through real kernel mounts: mount a memory filesystem on a fresh
 * directory, and run client code in another process (the test process serves the mount, so
 * it must never make blocking calls into it itself).
 *
 * @module
 */

import {
  type FileSystem,
  type FuseSession,
  type Logger,
  mount,
  type MountOptions,
} from "../../src/fuse/mod.ts";
import { MemFs, type MemFsOptions } from "./memfs.ts";

/** The Debian python3 (reachable by unprivileged users too). */
export const PYTHON = "/usr/bin/python3";

/** A logger collecting warnings and errors (tests assert none happened where relevant). */
export class TestLogger implements Logger {
  lines: string[] = [];
  debug(m: string): void {
    if (Deno.env.get("FUSE_TEST_TRACE")) console.error(m);
  }
  info(m: string): void {
    this.lines.push(`info ${m}`);
  }
  warn(m: string): void {
    this.lines.push(`warn ${m}`);
  }
  error(m: string): void {
    this.lines.push(`error ${m}`);
    console.error(m);
  }
}

export interface Mounted<F extends FileSystem = MemFs> {
  dir: string;
  fs: F;
  session: FuseSession;
  logger: TestLogger;
}

/** Mounts `fs` (default a MemFs with a 0777 root) on a fresh temp dir; unmounts afterwards. */
export async function withMount<F extends FileSystem = MemFs>(
  body: (m: Mounted<F>) => Promise<void>,
  options: { fs?: F; memfs?: MemFsOptions; mount?: MountOptions; parent?: string } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dfh-fuse-", dir: options.parent });
  const logger = new TestLogger();
  const fs = options.fs ?? (new MemFs({ rootMode: 0o777, ...options.memfs }) as unknown as F);
  const session = await mount(fs, dir, {
    logger,
    debug: !!Deno.env.get("FUSE_TEST_TRACE"),
    fsName: "dfh-memfs",
    ...options.mount,
  });
  try {
    await body({ dir, fs, session, logger });
  } finally {
    await session.unmount({ lazy: true });
    await Deno.remove(dir);
  }
}

/** Python prelude: `R` is printed as JSON at the end; `E(fn, *args)` gives the errno name on error. */
const PRELUDE = `
import os, sys, json, errno, ctypes, stat, time, signal
libc = ctypes.CDLL(None, use_errno=True)
R = {}
def E(fn, *a, **k):
    try:
        return fn(*a, **k)
    except OSError as x:
        return errno.errorcode.get(x.errno, x.errno)
def cerr(r):
    if r < 0:
        n = ctypes.get_errno()
        return errno.errorcode.get(n, n)
    return r
def rename2(a, b, flags):
    return cerr(libc.renameat2(-100, a.encode(), -100, b.encode(), flags))
def write_file(p, data, mode=0o644):
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, data)
    os.close(fd)
def read_file(p):
    with open(p, "rb") as f:
        return f.read()
`;

export interface PyResult {
  // deno-lint-ignore no-explicit-any
  [key: string]: any;
}

/**
 * Runs python `code` in `cwd` (as `user` if given: "nobody" or a uid:gid) and returns `R`.
 * Throws with python's stderr if it fails.
 */
export async function py(
  code: string,
  options: { cwd?: string; user?: string; stdin?: string } = {},
): Promise<PyResult> {
  // Never spawn with cwd inside the mount: the spawning thread would wait for the child's
  // chdir, which waits for this process to serve it.
  const chdir = options.cwd ? `os.chdir(${JSON.stringify(options.cwd)})\n` : "";
  const script = PRELUDE + chdir + code + "\nprint(json.dumps(R))\n";
  let cmd = PYTHON;
  let args = ["-c", script];
  if (options.user) {
    const [uid, gid] = options.user === "nobody" ? ["65534", "65534"] : options.user.split(":");
    cmd = "setpriv";
    args = [`--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", PYTHON, "-c", script];
  }
  const child = new Deno.Command(cmd, {
    args,
    stdin: options.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`python failed (${out.code}):\n${stderr}\n${stdout}`);
  const last = stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(last);
  } catch {
    throw new Error(`python printed no result:\n${stdout}\n${stderr}`);
  }
}

/** Runs a shell command line; returns stdout (throws with stderr on failure). */
export async function sh(line: string, options: { cwd?: string } = {}): Promise<string> {
  const cd = options.cwd ? `cd '${options.cwd}' && ` : "";
  const out = await new Deno.Command("sh", {
    args: ["-c", cd + line],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`sh -c '${line}' failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Fails (never skips) when FUSE cannot be used here. */
export async function requireFuse(): Promise<void> {
  try {
    await Deno.stat("/dev/fuse");
  } catch {
    throw new Error("/dev/fuse is missing: FUSE tests need it");
  }
  // Distributions ship /dev/fuse as 0666 (fusermount3 opens it as the calling user); some
  // containers/VMs create it 0600, which breaks every non-root mount.
  const info = await Deno.stat("/dev/fuse");
  if ((info.mode! & 0o777) !== 0o666 && Deno.uid() === 0) {
    console.error("FUSE tests: /dev/fuse was not mode 0666; setting it (as udev would)");
    await Deno.chmod("/dev/fuse", 0o666);
  }
  try {
    const { ensureFuseTools } = await import("../../tasks/testbed/mod.ts");
    await ensureFuseTools();
  } catch (error) {
    throw new Error(`fuse3 tools unavailable: ${(error as Error).message}`);
  }
}

/** Reads a byte stream line by line (`next()` resolves to the next line without "\n"). */
export class LineReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }
  async next(): Promise<string | undefined> {
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) return this.#buffer ? this.#buffer : undefined;
      this.#buffer += value;
    }
  }
  release(): void {
    this.#reader.releaseLock();
  }
}
