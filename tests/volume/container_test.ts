// dockerfuse running in a container (the image of tasks/container): its FUSE mount reaches the
// host and other containers through an rshared bind mount; `docker stop` leaves nothing behind.

import { deepStrictEqual, ok } from "node:assert/strict";
import { ensureContainerImage } from "../../tasks/container/build.ts";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import {
  docker,
  isMounted,
  mountsBelow,
  uniqueSuffix,
  unmountAllBelow,
  waitFor,
} from "./helpers.ts";

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

Deno.test("container: dockerfuse in a container shares A's files through rshared; docker stop unmounts", async () => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const image = await ensureContainerImage();
  const suffix = uniqueSuffix();
  const a = await startTestContainer(bed, "musl", { name: `dfh-ct-a-${suffix}` });
  const shared = await Deno.makeTempDir({ prefix: "dockerfuse-shared-" });
  const fs = `dfh-ct-fs-${suffix}`;
  try {
    // The host side of the propagation must itself be a shared mount.
    await run("mount", ["--bind", shared, shared]);
    await run("mount", ["--make-rshared", shared]);
    const started = performance.now();
    await docker([
      "run",
      "-d",
      "--name",
      fs,
      "--network",
      "none",
      "--device",
      "/dev/fuse",
      "--cap-add",
      "SYS_ADMIN",
      "--security-opt",
      "apparmor=unconfined",
      "-v",
      "/var/run/docker.sock:/var/run/docker.sock",
      "-v",
      `${shared}:/mnt/dockerfuse:rshared`,
      image,
      "mount",
      "--allow-other",
      a,
      "/mnt/dockerfuse/a",
    ]);
    const mountpoint = `${shared}/a`;
    await waitFor("the mount to reach the host", async () => {
      if (await isMounted(mountpoint)) return true;
      const state = await docker(["container", "inspect", "-f", "{{.State.Running}}", fs]);
      if (state.stdout.trim() !== "true") {
        throw new Error(`the dockerfuse container exited:\n${(await docker(["logs", fs])).stderr}`);
      }
      return false;
    }, 60_000);
    console.log(
      `dockerfuse container: mount visible on the host after ${
        Math.round(performance.now() - started)
      } ms`,
    );
    deepStrictEqual(await Deno.readTextFile(`${mountpoint}/data/hello.txt`), "hello from musl\n");

    const consumer = (args: string[]) =>
      docker([
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        `${shared}:/mnt/dockerfuse:rslave`,
        bed.images.musl,
        ...args,
      ]);
    const read = await consumer(["cat", "/mnt/dockerfuse/a/data/hello.txt"]);
    deepStrictEqual(read.stdout, "hello from musl\n");
    await consumer(["sh", "-c", 'printf "from C" > /mnt/dockerfuse/a/data/from-c.txt']);
    deepStrictEqual((await docker(["exec", a, "cat", "/data/from-c.txt"])).stdout, "from C");

    const stopping = performance.now();
    await docker(["stop", fs]);
    console.log(
      `docker stop of the dockerfuse container: ${Math.round(performance.now() - stopping)} ms`,
    );
    deepStrictEqual(
      (await docker(["container", "inspect", "-f", "{{.State.ExitCode}}", fs])).stdout.trim(),
      "0",
    );
    deepStrictEqual(await mountsBelow(shared), [shared], "docker stop left a mount behind");
    const logs = (await docker(["logs", fs])).stderr;
    ok(logs.includes("Unmounting '/mnt/dockerfuse/a'"), logs);
    ok(!logs.includes("left behind"), logs);
  } finally {
    await docker(["rm", "-f", fs], false);
    await unmountAllBelow(shared);
    await removeTestContainer(bed, a);
    await Deno.remove(shared, { recursive: true }).catch(() => {});
  }
});
