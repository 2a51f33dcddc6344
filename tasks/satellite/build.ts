/**
 * Packaging of the satellite: `dist/satellite/<arch>/` with a manifest.json for the deployer.
 *
 * Runtime mode (works offline): the Deno runtime for the arch from npm, the satellite bundled
 * into one script, and a private glibc (loader, libc, libm, libdl, libpthread, librt,
 * libgcc_s) so it starts in any container, with or without a libc of its own.
 *
 * Compiled mode (`deno compile`) needs `denort` for the target (DENORT_BIN, or Deno's cache);
 * it is not available offline, and a compiled binary reads its payload through
 * /proc/self/exe, which is the loader when started through the private glibc. So runtime mode
 * is the default; compiled mode is reported as unavailable when asked for without denort.
 *
 * @module
 */

import type { SatelliteManifest } from "../../src/docker/mod.ts";

/** Architectures the satellite is packaged for. */
export type SatelliteArch = "x86_64" | "aarch64";

/** The manifest format is the deployer's (src/docker): one definition for both sides. */
export type { SatelliteManifest };

/** What one arch's build produced. */
export interface ArchReport {
  arch: SatelliteArch;
  dir: string;
  buildId: string;
  /** Bytes of all files. */
  totalBytes: number;
  files: { path: string; bytes: number }[];
  /** True when the inputs had not changed and the folder was kept. */
  upToDate: boolean;
}

/** Options of {@link buildSatellite}. */
export interface BuildOptions {
  /** Project root (default: this repository). */
  root?: URL;
  arches?: SatelliteArch[];
  mode?: "auto" | "runtime" | "compiled";
  /** Progress and notes (stderr by default). */
  log?: (line: string) => void;
  /** Rebuild even if the inputs did not change. */
  force?: boolean;
}

const PLACEHOLDER = "@@DOCKERFUSE_BUILD_ID@@";
/** Where the I/O worker's bundled source goes (satellite/workers.ts), as a string literal. */
const WORKER_PLACEHOLDER = /(["'])@@DOCKERFUSE_IO_WORKER@@\1/;
const LIBS = [
  "libc.so.6",
  "libm.so.6",
  "libdl.so.2",
  "libpthread.so.0",
  "librt.so.1",
  "libgcc_s.so.1",
];
const ARCH_INFO: Record<SatelliteArch, {
  npm: string;
  debian: string;
  triplet: string;
  loader: string;
  interp: string;
  target: string;
}> = {
  x86_64: {
    npm: "@deno/linux-x64-glibc",
    debian: "amd64",
    triplet: "x86_64-linux-gnu",
    loader: "ld-linux-x86-64.so.2",
    interp: "/lib64/ld-linux-x86-64.so.2",
    target: "x86_64-unknown-linux-gnu",
  },
  aarch64: {
    npm: "@deno/linux-arm64-glibc",
    debian: "arm64",
    triplet: "aarch64-linux-gnu",
    loader: "ld-linux-aarch64.so.1",
    interp: "/lib/ld-linux-aarch64.so.1",
    target: "aarch64-unknown-linux-gnu",
  },
};

/** Deno flags of the satellite's `deno run`: no config, no network, no cache writes. */
export const RUN_FLAGS = [
  "run",
  "--allow-all",
  "--no-config",
  "--no-lock",
  "--no-remote",
  "--no-npm",
  "--no-code-cache",
  "--no-prompt",
  // The satellite is a guest in the container's memory: a small young generation (V8's default
  // is 16 MiB per semi-space) and a bounded old space keep its heap small whatever the workload.
  "--v8-flags=--max-semi-space-size=1,--max-old-space-size=64,--expose-gc",
];

/**
 * Environment of the satellite's exec. DENO_DIR under /dev/null cannot be created, so Deno
 * keeps its caches in memory and writes nothing into the container.
 */
export const RUN_ENV: Record<string, string> = {
  DENO_DIR: "/dev/null/deno",
  DENO_NO_UPDATE_CHECK: "1",
  DENO_NO_PROMPT: "1",
  NO_COLOR: "1",
};

async function run(cmd: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.split("\n").slice(-3).join(" / ")}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function hostArch(): SatelliteArch {
  const a = Deno.build.arch;
  if (a !== "x86_64" && a !== "aarch64") throw new Error(`Cannot build on architecture ${a}`);
  return a;
}

async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Bundles one entry point of satellite/ into one script. */
async function bundleOne(rootDir: string, out: string, entry: string): Promise<string> {
  await run(Deno.execPath(), [
    "bundle",
    "--platform",
    "deno",
    "--quiet",
    "-o",
    out,
    `${rootDir}/satellite/${entry}`,
  ], { cwd: rootDir });
  return await Deno.readTextFile(out);
}

/**
 * Bundles satellite/main.ts into one script (with the build id placeholder). The I/O worker
 * (satellite/io_worker.ts) is bundled too and embedded as a string: the satellite deletes its
 * own files at start, so the worker is started from that source (a blob URL), not a file.
 */
async function bundle(rootDir: string, cacheDir: string): Promise<string> {
  const worker = await bundleOne(rootDir, `${cacheDir}/io_worker.bundle.js`, "io_worker.ts");
  if (/from "node:|__require\(|@@DOCKERFUSE_/.test(worker)) {
    throw new Error("The I/O worker bundle must be self-contained and hold no placeholder");
  }
  const bundled = await bundleOne(rootDir, `${cacheDir}/satellite.bundle.js`, "main.ts");
  if (!WORKER_PLACEHOLDER.test(bundled)) {
    throw new Error("The bundle lost the I/O worker placeholder");
  }
  const text = bundled.replace(WORKER_PLACEHOLDER, () => JSON.stringify(worker));
  if (!text.includes(PLACEHOLDER)) throw new Error("The bundle lost the build id placeholder");
  if (/from "node:|__require\(/.test(text)) {
    throw new Error("The satellite bundle pulls in Node built-ins; it must stay self-contained");
  }
  // msgpackr probes `typeof Buffer`, which makes Deno load its Node Buffer polyfill: ~10 ms
  // natively, ~650 ms under qemu (arm64 containers on x86_64 hosts). A module-scope binding
  // shadows the global, so msgpackr uses plain Uint8Arrays and the polyfill stays unloaded.
  if (/\b(let|const|class|function) Buffer\b/.test(text)) {
    throw new Error("The satellite bundle declares Buffer; cannot shadow the global");
  }
  return asScript(
    `var Buffer; // shadows Deno's lazily loaded Node Buffer global (see tasks/satellite)\n${text}`,
  );
}

/**
 * The satellite's entry module: it runs the bundle as a classic script (indirect eval, strict),
 * so that Deno does not analyse the bundle's ~270 KB as a module graph first: start to hello
 * took 120-125 ms with the bundle as the main module, 82-87 ms this way (on the host).
 */
const LOADER =
  `// dockerfuse satellite: runs bundle.js, next to this file (see tasks/satellite/build.ts)
(0, eval)(Deno.readTextFileSync(new URL("./bundle.js", import.meta.url)));
`;

/**
 * The bundle as a strict classic script: its one use of \`import.meta.url\` (the development
 * path to the I/O worker, dead once its source is embedded) becomes the main module's URL,
 * the same directory. Throws unless the result parses as a script.
 */
function asScript(text: string): string {
  const script = `"use strict";\n${text.replaceAll("import.meta.url", "Deno.mainModule")}\n` +
    "//# sourceURL=bundle.js\n";
  if (/\bimport\.meta\b/.test(script)) {
    throw new Error("The satellite bundle still uses import.meta: it cannot run as a script");
  }
  try {
    new Function(script);
  } catch (error) {
    throw new Error(`The satellite bundle does not parse as a script: ${error}`);
  }
  return script;
}

/** The deno executable for `arch`, same version as node_modules/deno. */
async function denoRuntime(
  rootDir: string,
  cacheDir: string,
  arch: SatelliteArch,
  log: (s: string) => void,
): Promise<string> {
  const version = JSON.parse(await Deno.readTextFile(`${rootDir}/node_modules/deno/package.json`))
    .version as string;
  const pkg = ARCH_INFO[arch].npm;
  const installed = `${rootDir}/node_modules/${pkg}`;
  if (await exists(`${installed}/deno`)) {
    const v = JSON.parse(await Deno.readTextFile(`${installed}/package.json`)).version;
    if (v === version) return `${installed}/deno`;
  }
  const cached = `${cacheDir}/npm/${pkg.replace("/", "+")}`;
  const minor = version.split(".").slice(0, 2).join(".");
  if (await exists(cached)) {
    for await (const entry of Deno.readDir(cached)) {
      const deno = `${cached}/${entry.name}/package/deno`;
      if (entry.name.startsWith(`${minor}.`) && await exists(deno)) return deno;
    }
  }
  const chosen = await pickVersion(pkg, version);
  if (chosen !== version) {
    log(`${pkg}@${version} is not published; using ${chosen} (same minor, the bundle is plain JS)`);
  }
  const dir = `${cached}/${chosen}`;
  await Deno.mkdir(dir, { recursive: true });
  log(`fetching ${pkg}@${chosen} with npm pack (not installed as a dependency)`);
  const packed =
    (await run("npm", ["pack", `${pkg}@${chosen}`, "--silent", "--pack-destination", dir], {
      cwd: dir,
    })).trim().split("\n").pop()!;
  await run("tar", ["-xzf", `${dir}/${packed}`, "-C", dir]);
  await Deno.remove(`${dir}/${packed}`);
  return `${dir}/package/deno`;
}

/** `version` if published, else the newest published patch release of the same minor. */
async function pickVersion(pkg: string, version: string): Promise<string> {
  const published: string[] = JSON.parse(await run("npm", ["view", pkg, "versions", "--json"]));
  if (published.includes(version)) return version;
  const [major, minor, patch] = version.split(".").map(Number);
  const candidates = published
    .map((v) => v.split(".").map(Number))
    .filter(([a, b, c]) => a === major && b === minor && c < patch)
    .sort((x, y) => y[2] - x[2]);
  if (candidates.length === 0) {
    throw new Error(
      `Cannot get the Deno runtime ${pkg}@${version}: npm has no ${major}.${minor}.x release`,
    );
  }
  return candidates[0].join(".");
}

/** Directory holding the arch's glibc files (loader + LIBS). */
async function glibcDir(
  cacheDir: string,
  arch: SatelliteArch,
  log: (s: string) => void,
): Promise<string> {
  const info = ARCH_INFO[arch];
  if (arch === hostArch() && await exists(`/lib/${info.triplet}/libc.so.6`)) {
    return `/lib/${info.triplet}`;
  }
  const dir = `${cacheDir}/apt/${info.debian}`;
  const libDir = `${dir}/root/lib/${info.triplet}`;
  if (await exists(`${libDir}/libgcc_s.so.1`) && await exists(`${libDir}/libc.so.6`)) return libDir;
  await Deno.mkdir(dir, { recursive: true });
  const foreign = (await run("dpkg", ["--print-foreign-architectures"])).split("\n");
  if (!foreign.includes(info.debian)) {
    log(`adding dpkg architecture ${info.debian} (apt lists only, nothing installed)`);
    await run("dpkg", ["--add-architecture", info.debian]);
    await run("apt-get", ["update", "-qq"]);
  }
  const debs = [`libc6:${info.debian}`, `libgcc-s1:${info.debian}`];
  log(`downloading ${debs.join(" ")} into ${dir}`);
  try {
    await run("apt-get", ["download", "-qq", ...debs], { cwd: dir });
  } catch {
    await run("apt-get", ["update", "-qq"]);
    await run("apt-get", ["download", "-qq", ...debs], { cwd: dir }).catch((e) => {
      throw new Error(
        `Cannot get a glibc for ${arch}: ${e.message}. ` +
          `The ${arch} satellite needs the Debian packages ${debs.join(", ")}.`,
      );
    });
  }
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.endsWith(".deb")) {
      await run("dpkg-deb", ["-x", `${dir}/${entry.name}`, `${dir}/root`]);
    }
  }
  if (!await exists(`${libDir}/libc.so.6`)) throw new Error(`No libc.so.6 in ${libDir}`);
  return libDir;
}

/** Where denort for `arch` is, if anywhere (DENORT_BIN or Deno's download cache). */
async function findDenort(arch: SatelliteArch): Promise<string | undefined> {
  const env = Deno.env.get("DENORT_BIN");
  if (env && await exists(env)) return env;
  const version = Deno.version.deno;
  const dirs = [Deno.env.get("DENO_DIR"), `${Deno.env.get("HOME")}/.cache/deno`].filter(Boolean);
  for (const d of dirs) {
    const zip = `${d}/dl/release/v${version}/denort-${ARCH_INFO[arch].target}.zip`;
    if (await exists(zip)) return zip;
  }
  return undefined;
}

interface Source {
  path: string;
  mode: number;
  from?: string;
  text?: string;
}

async function fingerprint(sources: Source[]): Promise<string> {
  // The manifest's launch flags and environment are inputs too.
  const parts: string[] = [JSON.stringify({ RUN_FLAGS, RUN_ENV })];
  for (const s of sources) {
    if (s.text !== undefined) parts.push(`${s.path}:${await sha256Hex(s.text)}`);
    else {
      const st = await Deno.stat(s.from!);
      parts.push(`${s.path}:${s.from}:${st.size}:${st.mtime?.getTime()}:${s.mode}`);
    }
  }
  return await sha256Hex(parts.join("\n"));
}

async function buildArch(
  rootDir: string,
  cacheDir: string,
  arch: SatelliteArch,
  script: string,
  options: BuildOptions,
  log: (s: string) => void,
): Promise<ArchReport> {
  const info = ARCH_INFO[arch];
  const deno = await denoRuntime(rootDir, cacheDir, arch, log);
  const libs = await glibcDir(cacheDir, arch, log);
  const sources: Source[] = [
    { path: "deno", mode: 0o700, from: deno },
    { path: "satellite.js", mode: 0o600, text: LOADER },
    { path: "bundle.js", mode: 0o600, text: script },
    {
      path: `lib/${info.loader}`,
      mode: 0o700,
      from: await Deno.realPath(`${libs}/${info.loader}`),
    },
    ...await Promise.all(
      LIBS.map(async (l) => ({
        path: `lib/${l}`,
        mode: 0o600,
        from: await Deno.realPath(`${libs}/${l}`),
      })),
    ),
  ];
  const outDir = `${rootDir}/dist/satellite/${arch}`;
  const stamp = `${cacheDir}/${arch}.inputs`;
  const print = await fingerprint(sources);
  if (
    !options.force && await exists(`${outDir}/manifest.json`) &&
    (await Deno.readTextFile(stamp).catch(() => "")) === print
  ) {
    const manifest: SatelliteManifest = JSON.parse(
      await Deno.readTextFile(`${outDir}/manifest.json`),
    );
    // Newer than its sources again: the CLI then skips starting this check (src/cli/main.ts).
    const now = new Date();
    await Deno.utime(`${outDir}/manifest.json`, now, now);
    return await report(arch, outDir, manifest, true);
  }

  // build id: over every file, satellite.js in its placeholder form, then substituted in
  const hashes: string[] = [];
  for (const s of sources) {
    const data = s.text !== undefined
      ? new TextEncoder().encode(s.text)
      : await Deno.readFile(s.from!);
    hashes.push(`${s.path} ${s.mode.toString(8)} ${await sha256Hex(data)}`);
  }
  const buildId = (await sha256Hex(hashes.join("\n"))).slice(0, 24);

  const tmp = `${outDir}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${tmp}/lib`, { recursive: true });
  for (const s of sources) {
    const target = `${tmp}/${s.path}`;
    if (s.text !== undefined) {
      await Deno.writeTextFile(target, s.text.replace(PLACEHOLDER, buildId));
    } else await Deno.copyFile(s.from!, target);
    await Deno.chmod(target, s.mode);
  }
  const run = [...RUN_FLAGS, "{dir}/satellite.js"];
  const manifest: SatelliteManifest = {
    formatVersion: 1,
    arch,
    mode: "runtime",
    buildId,
    files: sources.map((s) => ({ path: s.path, mode: s.mode })),
    command: ["{dir}/deno", ...run],
    loaderCommand: [
      `{dir}/lib/${info.loader}`,
      "--library-path",
      "{dir}/lib",
      "{dir}/deno",
      ...run,
    ],
    // Always start through the private glibc: a container's own glibc may be too old for
    // Deno (it needs >= 2.27) or be a compatibility shim (gcompat), and the bundle ships the
    // libraries anyway. (`command` stays valid for containers known to have a recent glibc.)
    glibcProbe: [],
    env: { ...RUN_ENV },
  };
  await Deno.writeTextFile(`${tmp}/manifest.json`, JSON.stringify(manifest, null, 2) + "\n");
  await Deno.remove(outDir, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, outDir);
  await Deno.writeTextFile(stamp, print);
  log(`${arch}: built ${outDir} (build ${buildId})`);
  return await report(arch, outDir, manifest, false);
}

async function report(
  arch: SatelliteArch,
  dir: string,
  manifest: SatelliteManifest,
  upToDate: boolean,
): Promise<ArchReport> {
  const files = await Promise.all(
    manifest.files.map(async (f) => ({
      path: f.path,
      bytes: (await Deno.stat(`${dir}/${f.path}`)).size,
    })),
  );
  return {
    arch,
    dir,
    buildId: manifest.buildId,
    files,
    totalBytes: files.reduce((a, f) => a + f.bytes, 0),
    upToDate,
  };
}

/** Builds `dist/satellite/<arch>/` for each arch. Throws with a clear message on failure. */
export async function buildSatellite(options: BuildOptions = {}): Promise<ArchReport[]> {
  const rootUrl = options.root ?? new URL("../../", import.meta.url);
  const rootDir = rootUrl.pathname.replace(/\/$/, "");
  const log = options.log ?? ((s: string) => console.error(`build-satellite: ${s}`));
  const arches = options.arches ?? ["x86_64", "aarch64"];
  const mode = options.mode ?? "auto";
  const cacheDir = `${rootDir}/dist/cache/satellite`;
  await Deno.mkdir(cacheDir, { recursive: true });

  for (const arch of arches) {
    const denort = await findDenort(arch);
    if (mode === "compiled") {
      throw new Error(
        denort
          ? `Compiled mode for ${arch} found denort at ${denort}, but compiled satellites cannot ` +
            "start through the private glibc loader (they read their payload from " +
            "/proc/self/exe); use runtime mode"
          : `Cannot build a compiled satellite for ${arch}: deno compile needs denort for ` +
            `${ARCH_INFO[arch].target}, which it downloads from Deno's CDN (unreachable here). ` +
            "Set DENORT_BIN or prime the Deno cache online; runtime mode works offline.",
      );
    }
    if (!denort) {
      log(`${arch}: denort not available (offline), building runtime mode`);
    } else {
      log(`${arch}: denort found at ${denort}; runtime mode still used (works without glibc)`);
    }
  }
  const script = await bundle(rootDir, cacheDir);
  const reports: ArchReport[] = [];
  for (const arch of arches) {
    reports.push(await buildArch(rootDir, cacheDir, arch, script, options, log));
  }
  return reports;
}
