// `deno task build-satellite [--arch x86_64|aarch64]... [--mode auto|runtime|compiled] [--force]`
//
// Fills dist/satellite/<arch>/ (runtime mode: deno for the arch, satellite.js, private glibc,
// manifest.json). Prints one line per arch with its size and build id.

import { buildSatellite, type SatelliteArch } from "./satellite/build.ts";

function parse(args: string[]): {
  arches?: SatelliteArch[];
  mode: "auto" | "runtime" | "compiled";
  force: boolean;
} {
  const arches: SatelliteArch[] = [];
  let mode: "auto" | "runtime" | "compiled" = "auto";
  let force = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--arch" && (args[i + 1] === "x86_64" || args[i + 1] === "aarch64")) {
      arches.push(args[++i] as SatelliteArch);
    } else if (
      a === "--mode" && (args[i + 1] === "auto" || args[i + 1] === "runtime" ||
        args[i + 1] === "compiled")
    ) {
      mode = args[++i] as typeof mode;
    } else if (a === "--force") force = true;
    else {
      throw new Error(
        `Cannot build the satellite: unknown argument '${a}'\n` +
          "usage: build_satellite.ts [--arch x86_64|aarch64]... [--mode auto|runtime|compiled] [--force]",
      );
    }
  }
  return { arches: arches.length ? arches : undefined, mode, force };
}

if (import.meta.main) {
  try {
    const reports = await buildSatellite(parse(Deno.args));
    for (const r of reports) {
      console.log(
        `${r.arch}: ${(r.totalBytes / 1e6).toFixed(1)} MB in ${r.dir} ` +
          `(build ${r.buildId}${r.upToDate ? ", up to date" : ""})`,
      );
    }
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    Deno.exit(1);
  }
}
