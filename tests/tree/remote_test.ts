/** `dockerfuse engine` of a remote engine: a second dockerd over verified TLS on 127.0.0.1. */

import { deepStrictEqual, equal } from "node:assert/strict";
import { startTlsDockerd } from "../docker/tls_engine.ts";
import { ensureTestBed } from "../../tasks/testbed/mod.ts";
import { docker, helperContainers, isMounted, startEngine } from "./harness.ts";

Deno.test("engine: a remote engine over TLS shows its containers and images", async () => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const remote = await startTlsDockerd(bed);
  try {
    const name =
      (await docker(["-H", remote.unixHost, "inspect", "-f", "{{.Name}}", remote.containerId]))
        .stdout.trim().replace(/^\//, "");
    const run = await startEngine([], undefined, {
      DOCKER_HOST: `tcp://127.0.0.1:${remote.port}`,
      DOCKER_TLS_VERIFY: "1",
      DOCKER_CERT_PATH: remote.certDir,
    });
    try {
      const containers = [];
      for await (const e of Deno.readDir(`${run.mountpoint}/containers`)) containers.push(e.name);
      deepStrictEqual(containers, [name], "only the remote engine's container");
      const dir = `${run.mountpoint}/containers/${name}`;
      equal(await Deno.readTextFile(`${dir}/data/hello.txt`), "hello from musl\n");
      await Deno.writeTextFile(`${dir}/tmp/remote.txt`, "over tls\n");
      const inside = await docker(["-H", remote.unixHost, "exec", name, "cat", "/tmp/remote.txt"]);
      equal(inside.stdout, "over tls\n");
      const started = performance.now();
      equal(
        await Deno.readTextFile(`${run.mountpoint}/images/${bed.images.musl}/data/hello.txt`),
        "hello from musl\n",
      );
      console.log(
        `figure: first access to an image of the TLS engine took ${
          Math.round(performance.now() - started)
        } ms (satellite gzip-compressed)`,
      );
      equal((await helperContainers(remote.unixHost)).length, 1);
      equal(await run.stop("SIGTERM"), 0);
      equal(await isMounted(run.mountpoint), false);
      deepStrictEqual(await helperContainers(remote.unixHost), []);
    } finally {
      await run.cleanup();
    }
  } finally {
    await remote.stop();
  }
});
