// `deno task bench [NAME…] [--json]`: runs the benchmarks in tasks/bench/ one after another
// (fuse: the FUSE layer over a memory filesystem; satellite: the RPC over a local pipe;
// e2e: dockerfuse against sshfs, the native path and the raw exec channel).
// Benchmarks print figures; they assert nothing about time.

const ROOT = new URL("../", import.meta.url);
const ALL = ["fuse", "satellite", "e2e"];

async function main(args: string[]): Promise<number> {
  const flags = args.filter((a) => a.startsWith("-"));
  const names = args.filter((a) => !a.startsWith("-"));
  const chosen = names.length > 0 ? names : ALL;
  let failures = 0;
  for (const name of chosen) {
    const file = new URL(`bench/${name}.ts`, import.meta.url);
    try {
      await Deno.stat(file);
    } catch {
      console.error(`Cannot run benchmark '${name}': tasks/bench/${name}.ts is not built yet`);
      failures++;
      continue;
    }
    console.error(`\n== benchmark: ${name}`);
    const status = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", file.pathname, ...flags],
      cwd: ROOT,
    }).spawn().status;
    if (!status.success) failures++;
  }
  return failures === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
