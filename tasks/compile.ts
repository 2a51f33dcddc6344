// `deno task compile`: the single `dockerfuse` executable, with both satellites inside it.
//
// `deno compile` needs `denort` for the target, which Deno downloads from its CDN on first use.
// Offline, point DENORT_BIN at a denort binary of the same Deno version, or fill the Deno cache.

import { CLIENT_V8_FLAGS } from "../src/cli/launch.ts";

const ROOT = new URL("../", import.meta.url);

async function run(args: string[], env: Record<string, string> = {}): Promise<Deno.CommandOutput> {
  return await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env,
    stdout: "inherit",
    stderr: "piped",
  }).output();
}

async function main(): Promise<number> {
  const output = Deno.args[0] ?? "dist/dockerfuse";
  const built = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "tasks/build_satellite.ts"],
    cwd: ROOT,
  }).spawn().status;
  if (!built.success) {
    console.error("Cannot compile dockerfuse: building the satellite failed (see above)");
    return 1;
  }
  const result = await run([
    "compile",
    "--allow-all",
    `--v8-flags=${CLIENT_V8_FLAGS}`,
    "--include",
    "dist/satellite",
    "--output",
    output,
    "src/cli/main.ts",
  ]);
  const stderr = new TextDecoder().decode(result.stderr);
  if (!result.success) {
    const offline = /denort|dl\.deno\.land|dns error|download/i.test(stderr);
    console.error(stderr.trimEnd());
    console.error(
      offline
        ? "Cannot compile dockerfuse: `deno compile` could not download `denort` for this platform " +
          "(no access to Deno's download site). Set DENORT_BIN to a denort binary of Deno " +
          `${Deno.version.deno}, or run once where Deno's CDN is reachable. Meanwhile use ` +
          "`deno task mount` / `deno task dockerfuse`, which need no compilation."
        : "Cannot compile dockerfuse: `deno compile` failed (see above).",
    );
    return 1;
  }
  console.error(`Compiled ${output}`);
  return 0;
}

if (import.meta.main) Deno.exit(await main());
