/** Host helpers for the test bed: running commands, apt, binfmt_misc, locking. */

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
  timeoutMs?: number;
}

/** Writes one progress line to stderr, with seconds since the process started. */
export function log(message: string): void {
  console.error(`testbed [${(performance.now() / 1000).toFixed(1)} s]: ${message}`);
}

/** Runs a command to completion, capturing its output. */
export async function run(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const command = new Deno.Command(cmd, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs),
  });
  let output: Deno.CommandOutput;
  try {
    output = await command.output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`Cannot run '${cmd}': command not found`);
    }
    throw error;
  }
  const result = {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
  if ((options.check ?? true) && result.code !== 0) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-15).join("\n");
    throw new Error(`Cannot run '${cmd} ${args.join(" ")}': exit code ${result.code}\n${detail}`);
  }
  return result;
}

/** True when an executable of that name is on PATH (or the path is executable). */
export async function hasCommand(name: string): Promise<boolean> {
  const dirs = name.includes("/") ? [""] : (Deno.env.get("PATH") ?? "").split(":");
  for (const dir of dirs) {
    const path = dir === "" ? name : `${dir}/${name}`;
    try {
      const info = await Deno.stat(path);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

export function isRoot(): boolean {
  return Deno.uid() === 0;
}

export async function isDebian(): Promise<boolean> {
  return await exists("/etc/debian_version") && await hasCommand("apt-get");
}

/** Directory for downloaded packages, base tarballs and the bed's lock. */
export function cacheDir(): string {
  if (isRoot()) return "/var/cache/dockerfuse-testbed";
  return new URL("../../.testbed/cache", import.meta.url).pathname;
}

/** Holds an exclusive lock on a file until `release` is called (or the process exits). */
export async function lockFile(path: string): Promise<{ release(): void }> {
  const file = await Deno.open(path, { create: true, write: true });
  await file.lock(true);
  return {
    release(): void {
      file.close();
    },
  };
}

const APT_ENV = { DEBIAN_FRONTEND: "noninteractive" };
const APT_OPTS = ["-o", "DPkg::Lock::Timeout=300", "-q"];

/** apt package state, one `apt-get update` per process at most. */
export class Apt {
  #updated = false;

  async isInstalled(pkg: string): Promise<boolean> {
    const r = await run("dpkg-query", ["-W", "-f=${Status}", pkg], { check: false });
    return r.code === 0 && r.stdout.includes("install ok installed");
  }

  async update(): Promise<void> {
    if (this.#updated) return;
    log("apt-get update");
    const r = await run("apt-get", [...APT_OPTS, "update"], { env: APT_ENV, check: false });
    // A third-party source failing must not stop us; a missing package fails clearly later.
    if (r.code !== 0) log(`apt-get update exited ${r.code}; continuing:\n${r.stderr.trim()}`);
    this.#updated = true;
  }

  async addArchitecture(arch: string): Promise<boolean> {
    const r = await run("dpkg", ["--print-foreign-architectures"]);
    if (r.stdout.split(/\s+/).includes(arch)) return false;
    log(`dpkg --add-architecture ${arch}`);
    await run("dpkg", ["--add-architecture", arch]);
    this.#updated = false;
    return true;
  }

  /** Installs packages without starting any service (policy-rc.d denies it meanwhile). */
  async install(pkgs: string[]): Promise<void> {
    if (pkgs.length === 0) return;
    await this.update();
    log(`apt-get install ${pkgs.join(" ")}`);
    const policy = "/usr/sbin/policy-rc.d";
    const ownPolicy = !(await exists(policy));
    if (ownPolicy) await Deno.writeTextFile(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 });
    try {
      await run("apt-get", [...APT_OPTS, "install", "-y", "--no-install-recommends", ...pkgs], {
        env: APT_ENV,
      });
    } finally {
      if (ownPolicy) await Deno.remove(policy).catch(() => {});
    }
  }

  /**
   * Returns the path of a cached .deb of `pkg` for `arch`, downloading it with
   * `apt-get download` into `dir` when absent. Nothing is installed.
   */
  async download(pkg: string, arch: string, dir: string): Promise<string> {
    const found = await findDeb(dir, pkg, arch);
    if (found) return found;
    await this.update();
    log(`apt-get download ${pkg}:${arch}`);
    await Deno.mkdir(dir, { recursive: true });
    await run("apt-get", [...APT_OPTS, "download", `${pkg}:${arch}`], { env: APT_ENV, cwd: dir });
    const path = await findDeb(dir, pkg, arch);
    if (!path) throw new Error(`Cannot download '${pkg}:${arch}': no .deb appeared in ${dir}`);
    return path;
  }
}

async function findDeb(dir: string, pkg: string, arch: string): Promise<string | undefined> {
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.name.startsWith(`${pkg}_`) && entry.name.endsWith(`_${arch}.deb`)) {
        return `${dir}/${entry.name}`;
      }
    }
  } catch {
    // no cache yet
  }
  return undefined;
}

/** True when a cached .deb of the package exists (so no apt traffic is needed). */
export async function hasCachedDeb(dir: string, pkg: string, arch: string): Promise<boolean> {
  return (await findDeb(dir, pkg, arch)) !== undefined;
}

/** The Debian mirror apt uses for the main archive (debootstrap must use the same). */
export async function debianMirror(): Promise<string> {
  const texts = [await Deno.readTextFile("/etc/apt/sources.list").catch(() => "")];
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir("/etc/apt/sources.list.d")) names.push(e.name);
    for (const name of names.sort()) {
      texts.push(await Deno.readTextFile(`/etc/apt/sources.list.d/${name}`).catch(() => ""));
    }
  } catch {
    // no sources.list.d
  }
  return parseMirror(texts, "bookworm") ?? "http://deb.debian.org/debian";
}

/**
 * First URI serving `suite` in apt source texts (one-line or deb822 format), in order;
 * undefined when none does.
 */
export function parseMirror(texts: string[], suite: string): string | undefined {
  for (const text of texts) {
    for (const line of text.split("\n")) {
      const m = line.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/);
      if (m && m[2] === suite) return m[1];
    }
    for (const stanza of text.split(/\n\s*\n/)) {
      if (/^Enabled:\s*no\s*$/im.test(stanza)) continue;
      const types = stanza.match(/^Types:\s*(.+)$/m);
      const uris = stanza.match(/^URIs:\s*(\S+)/m);
      const suites = stanza.match(/^Suites:\s*(.+)$/m);
      if (!types || !types[1].split(/\s+/).includes("deb")) continue;
      if (uris && suites && suites[1].trim().split(/\s+/).includes(suite)) return uris[1];
    }
  }
  return undefined;
}

const BINFMT_DIR = "/proc/sys/fs/binfmt_misc";

/** Parsed flags of a binfmt_misc entry, or undefined when it is not registered. */
export async function binfmtFlags(name: string): Promise<string | undefined> {
  const text = await Deno.readTextFile(`${BINFMT_DIR}/${name}`).catch(() => undefined);
  if (text === undefined || !text.startsWith("enabled")) return undefined;
  return text.match(/^flags:\s*(\S*)/m)?.[1] ?? "";
}

/**
 * Mounts binfmt_misc when needed and registers qemu-aarch64 with the F flag (the kernel
 * opens the interpreter at registration, so it also works inside containers).
 */
export async function ensureQemuAarch64(): Promise<void> {
  if (!(await exists(`${BINFMT_DIR}/register`))) {
    log("mounting binfmt_misc");
    await run("mount", ["-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR]);
  }
  const flags = await binfmtFlags("qemu-aarch64");
  if (flags !== undefined && flags.includes("F")) return;
  if (flags !== undefined) {
    log("re-registering qemu-aarch64 with the F flag");
    await Deno.writeTextFile(`${BINFMT_DIR}/qemu-aarch64`, "-1");
  }
  const conf = await Deno.readTextFile("/usr/lib/binfmt.d/qemu-aarch64.conf").catch(() => {
    throw new Error(
      "Cannot register qemu-aarch64: /usr/lib/binfmt.d/qemu-aarch64.conf missing " +
        "(is qemu-user-static installed?)",
    );
  });
  const line = conf.split("\n").find((l) => l.startsWith(":qemu-aarch64:"));
  if (!line) throw new Error("Cannot register qemu-aarch64: no entry in qemu-aarch64.conf");
  // Fields: :name:type:offset:magic:mask:interpreter:flags
  const fields = line.trim().split(":");
  const flagsField = fields[7] ?? "";
  if (!flagsField.includes("F")) fields[7] = flagsField + "F";
  log("registering qemu-aarch64 in binfmt_misc");
  await Deno.writeTextFile(`${BINFMT_DIR}/register`, fields.join(":"));
  const now = await binfmtFlags("qemu-aarch64");
  if (now === undefined) throw new Error("Cannot register qemu-aarch64: binfmt_misc refused it");
}

/** Unmounts anything mounted at or below `dir` (deepest first), so it can be removed safely. */
export async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await Deno.readTextFile("/proc/mounts")).split("\n")
    .map((l) => l.split(" ")[1])
    .filter((p) => p !== undefined && (p === dir || p.startsWith(dir + "/")))
    .sort((a, b) => b.length - a.length);
  for (const p of mounts) await run("umount", ["-l", p], { check: false });
}

/** Removes a build directory after making sure nothing is mounted inside it. */
export async function removeTree(dir: string): Promise<void> {
  await unmountBelow(dir);
  const left = (await Deno.readTextFile("/proc/mounts")).split("\n")
    .some((l) => (l.split(" ")[1] ?? "").startsWith(dir + "/"));
  if (left) throw new Error(`Cannot remove '${dir}': something is still mounted below it`);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** sha256 of a file, streamed through sha256sum to keep memory flat. */
export async function sha256File(path: string): Promise<string> {
  const r = await run("sha256sum", [path]);
  return r.stdout.split(" ")[0];
}
