// `deno task interactive-test`: start a throw-away container (alpine when the engine can pull
// it, else the local musl test image), mount it on ./tmp, let you try it, clean up on exit.

import { cliRunArgs } from "../src/cli/launch.ts";
import {
  ensureFuseTools,
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
} from "./testbed/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** ./tmp as the original tool used it, or ./tmp/interactive when ./tmp holds other files. */
async function mountpoint(): Promise<string> {
  const tmp = `${ROOT}tmp`;
  await Deno.mkdir(tmp, { recursive: true });
  for await (const _ of Deno.readDir(tmp)) {
    await Deno.mkdir(`${tmp}/interactive`, { recursive: true });
    return `${tmp}/interactive`;
  }
  return tmp;
}

async function docker(args: string[], timeoutMs: number): Promise<boolean> {
  const child = new Deno.Command("docker", { args, stdout: "null", stderr: "null" }).spawn();
  const timer = setTimeout(() => child.kill(), timeoutMs);
  try {
    return (await child.status).success;
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<number> {
  await ensureFuseTools();
  const name = `dockerfuse-interactive-${crypto.randomUUID().slice(0, 8)}`;
  let remove: () => Promise<void>;
  if (await docker(["pull", "alpine"], 20_000)) {
    if (
      !await docker([
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        name,
        "alpine",
        "sleep",
        "infinity",
      ], 60_000)
    ) {
      console.error("Cannot start an alpine container");
      return 1;
    }
    remove = () => docker(["rm", "-f", name], 30_000).then(() => {});
    console.error(`Started container ${name} from alpine`);
  } else {
    console.error("alpine cannot be pulled here; using the local musl test image instead");
    const bed = await ensureTestBed({ kinds: ["musl"] });
    await startTestContainer(bed, "musl", { name });
    remove = () => removeTestContainer(bed, name);
  }
  const MOUNTPOINT = await mountpoint();
  const shown = MOUNTPOINT.slice(ROOT.length);
  try {
    console.error(
      [
        "",
        `Mounting ${name} on ./${shown}. Try, in another terminal:`,
        `  ls -la ${shown}/    grep -r root ${shown}/etc    echo hi > ${shown}/hello-from-host`,
        `  docker exec ${name} cat /hello-from-host   (your write, seen from inside)`,
        "Press Ctrl-C here to unmount and clean up.",
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: cliRunArgs(["mount", name, MOUNTPOINT]),
      stdin: "null",
    }).spawn();
    // Ctrl-C reaches the child through the terminal's process group; we only wait for it.
    const ignore = (): void => {};
    Deno.addSignalListener("SIGINT", ignore);
    const status = await child.status;
    Deno.removeSignalListener("SIGINT", ignore);
    console.error(`dockerfuse exited with ${status.code}`);
    return status.code;
  } finally {
    await remove();
    await Deno.remove(MOUNTPOINT).catch(() => {});
    console.error(`Removed ${name} and ./${shown}`);
  }
}

if (import.meta.main) Deno.exit(await main());
