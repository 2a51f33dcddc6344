// The volume plugin with a FROM scratch container (no /etc/passwd) as the volume's source: the
// satellite's numeric default user makes it work where `--user root` failed.

import { equal } from "node:assert/strict";
import {
  ensureTestBed,
  removeTestContainer,
  smallDataEntries,
  startTestContainer,
} from "../../tasks/testbed/mod.ts";
import {
  docker,
  lockPluginTests,
  startPlugin,
  TEST_DRIVER,
  uniqueSuffix,
  unmountAllBelow,
} from "./helpers.ts";

Deno.test("volume plugin: a volume of a FROM scratch container reads and writes", async () => {
  const bed = await ensureTestBed({ kinds: ["scratch", "musl"] });
  const suffix = uniqueSuffix();
  const stateDir = await Deno.makeTempDir({ prefix: "dockerfuse-plugin-" });
  const a = await startTestContainer(bed, "scratch", { name: `dfh-vol-scratch-${suffix}` });
  const volume = `dfh-scratch-${suffix}`;
  const lock = await lockPluginTests();
  const plugin = await startPlugin(TEST_DRIVER, stateDir).catch(async (error) => {
    lock.release();
    await removeTestContainer(bed, a);
    throw error;
  });
  try {
    await docker(["volume", "create", "-d", TEST_DRIVER, "-o", `container=${a}`, volume]);
    const hello = smallDataEntries("scratch").find((e) => e.path === "hello.txt")!;
    const run = (script: string) =>
      docker([
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        `${volume}:/v`,
        bed.images.musl,
        "sh",
        "-c",
        script,
      ]);
    equal(
      (await run("cat /v/data/hello.txt")).stdout,
      hello.type === "file" ? new TextDecoder().decode(hello.content) : "",
    );
    await run("echo from-a-consumer > /v/data/written.txt");
    const copied = await docker(["cp", `${a}:/data/written.txt`, "-"]);
    equal(copied.stdout.includes("from-a-consumer\n"), true, copied.stdout);
  } finally {
    await docker(["volume", "rm", "-f", volume], false);
    await plugin.stop();
    await unmountAllBelow(stateDir);
    await removeTestContainer(bed, a);
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    await Deno.remove(plugin.socket).catch(() => {});
    lock.release();
  }
});
