// `deno task interactive-test`: start a throw-away container (alpine when the engine can pull
// it, else the local musl test image), mount it on ./tmp, let you try it, clean up on exit.

import {
  ensureFuseTools,
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
} from "./testbed/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MOUNTPOINT = `${ROOT}tmp`;

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
  await Deno.mkdir(MOUNTPOINT, { recursive: true });
  try {
    console.error(
      [
        "",
        `Mounting ${name} on ./tmp. Try, in another terminal:`,
        "  ls -la tmp/    grep -r root tmp/etc    echo hi > tmp/hello-from-host",
        `  docker exec ${name} cat /hello-from-host   (your write, seen from inside)`,
        "Press Ctrl-C here to unmount and clean up.",
        "",
      ].join("\n"),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}src/cli/main.ts`, "mount", name, MOUNTPOINT],
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
    console.error(`Removed ${name} and ./tmp`);
  }
}

if (import.meta.main) Deno.exit(await main());
