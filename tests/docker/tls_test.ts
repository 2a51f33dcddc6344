// A remote engine over TCP with TLS verification on: a second dockerd with --tlsverify.

import { connectEngine, DockerError } from "../../src/docker/mod.ts";
import { ok } from "node:assert/strict";
import { assertRejects, bed, randomBytes, readAll, sha256 } from "./helpers.ts";
import { startTlsDockerd } from "./tls_engine.ts";

async function sha256Hex(text: string): Promise<string> {
  return await sha256(new TextEncoder().encode(text));
}

Deno.test("remote TLS engine: DOCKER_HOST/DOCKER_TLS_VERIFY/DOCKER_CERT_PATH and contexts", async (t) => {
  const remote = await startTlsDockerd(await bed());
  try {
    const address = `tcp://127.0.0.1:${remote.port}`;

    await t.step("exec round trip and gzip upload over verified TLS", async () => {
      const engine = await connectEngine({
        env: { DOCKER_HOST: address, DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: remote.certDir },
        home: "/nonexistent-home",
      });
      ok(engine.isRemote);
      ok(engine.description === `${address} (TLS)`, engine.description);
      const info = await engine.inspectContainer(remote.containerId.slice(0, 10));
      ok(info.id === remote.containerId && info.arch === "x86_64");

      const data = randomBytes(8 * 1024 * 1024);
      const session = await engine.exec(info.id, ["cat"]);
      const writing = (async () => {
        const writer = session.stdin.getWriter();
        await writer.write(data);
        await writer.close();
      })();
      const back = await readAll(session.stdout);
      await writing;
      ok((await sha256(back)) === (await sha256(data)), `echo differs (${back.length} bytes)`);
      ok((await session.exited).code === 0);

      const payload = new TextEncoder().encode("over tls\n".repeat(1000));
      let total = 0;
      await engine.upload(info.id, "/tmp", [
        { path: "tls-upload.txt", type: "file", mode: 0o600, data: payload },
      ], { onProgress: (_sent, all) => total = all });
      ok(total > 0 && total < payload.length, `not gzipped: ${total} bytes sent`);
      const cat = await engine.exec(info.id, ["cat", "/tmp/tls-upload.txt"]);
      await cat.stdin.close();
      const read = await readAll(cat.stdout);
      ok((await sha256(read)) === (await sha256(payload)), "upload differs");
      engine.close();
    });

    await t.step("a CA that did not sign the server certificate fails verification", async () => {
      const error = await assertRejects(
        connectEngine({
          env: {
            DOCKER_HOST: address,
            DOCKER_TLS_VERIFY: "1",
            DOCKER_CERT_PATH: remote.wrongCaDir,
          },
          home: "/nonexistent-home",
        }),
        DockerError,
      );
      ok(error.code === "unreachable", error.code);
      ok(error.message.includes(address), error.message);
      ok(/certificate|issuer|verif|signature/i.test(error.message), error.message);
    });

    await t.step("the current context in config.json with its TLS material", async () => {
      const home = await Deno.makeTempDir({ prefix: "dfh-home-" });
      try {
        const hash = await sha256Hex("tls-test");
        const meta = `${home}/.docker/contexts/meta/${hash}`;
        const tls = `${home}/.docker/contexts/tls/${hash}/docker`;
        await Deno.mkdir(meta, { recursive: true });
        await Deno.mkdir(tls, { recursive: true });
        await Deno.writeTextFile(
          `${home}/.docker/config.json`,
          JSON.stringify({ currentContext: "tls-test" }),
        );
        await Deno.writeTextFile(
          `${meta}/meta.json`,
          JSON.stringify({
            Name: "tls-test",
            Metadata: {},
            Endpoints: { docker: { Host: address, SkipTLSVerify: false } },
          }),
        );
        for (const file of ["ca.pem", "cert.pem", "key.pem"]) {
          await Deno.copyFile(`${remote.certDir}/${file}`, `${tls}/${file}`);
        }
        const engine = await connectEngine({ env: {}, home });
        ok(engine.description === `${address} (TLS) (context tls-test)`, engine.description);
        const session = await engine.exec(remote.containerId, ["echo", "context"]);
        await session.stdin.close();
        ok(new TextDecoder().decode(await readAll(session.stdout)) === "context\n");
        ok((await session.exited).code === 0);
      } finally {
        await Deno.remove(home, { recursive: true });
      }
    });
  } finally {
    await remote.stop();
  }
});
