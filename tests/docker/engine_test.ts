// Docker layer against the real engine of the test bed: connection, inspection, archive, exec.

import { connectEngine, DockerError, type Engine } from "../../src/docker/mod.ts";
import { ok } from "node:assert/strict";
import { compressedBundle, type SatelliteManifest } from "../../src/docker/satellite.ts";
import {
  assertRejects,
  bed,
  dockerCli,
  engineFor,
  freePort,
  randomBytes,
  readAll,
  sha256,
  withContainer,
} from "./helpers.ts";

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

async function run(
  engine: Engine,
  id: string,
  argv: string[],
  options?: { user?: string; env?: Record<string, string> },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const session = await engine.exec(id, argv, options);
  await session.stdin.close();
  const [stdout, stderr] = await Promise.all([readAll(session.stdout), readAll(session.stderr)]);
  const { code } = await session.exited;
  return { code, stdout: text(stdout), stderr: text(stderr) };
}

Deno.test("engine: connects to the default socket and negotiates the API version", async () => {
  const theBed = await bed();
  ok(theBed.dockerHost === "unix:///var/run/docker.sock", theBed.dockerHost);
  const engine = await connectEngine({ env: {}, home: "/nonexistent-home" });
  ok(engine.description === "unix:///var/run/docker.sock", engine.description);
  ok(!engine.isRemote);
  const server = (await dockerCli(theBed, ["version", "--format", "{{.Server.APIVersion}}"]))
    .stdout.trim();
  const [smaj, smin] = server.split(".").map(Number);
  const [emaj, emin] = engine.apiVersion.split(".").map(Number);
  ok(emaj === smaj && emin <= smin, `engine ${engine.apiVersion}, server ${server}`);
  engine.close();
});

Deno.test("engine: DOCKER_API_VERSION is used as given", async () => {
  const theBed = await bed();
  const engine = await connectEngine({
    env: { DOCKER_HOST: theBed.dockerHost, DOCKER_API_VERSION: "1.40" },
    home: "/nonexistent-home",
  });
  ok(engine.apiVersion === "1.40");
  await withContainer("musl", async (id) => {
    const info = await engine.inspectContainer(id);
    ok(info.id === id);
    const result = await run(engine, id, ["echo", "v1.40"]);
    ok(result.stdout === "v1.40\n" && result.code === 0, JSON.stringify(result));
  });
});

Deno.test("engine: an unreachable engine is a clear error naming the address", async () => {
  const missing = "/tmp/dfh-no-such-dir/docker.sock";
  const unix = await assertRejects(
    connectEngine({ env: { DOCKER_HOST: `unix://${missing}` }, home: "/nonexistent-home" }),
    DockerError,
  );
  ok(unix.code === "unreachable", unix.code);
  ok(unix.message.includes(`unix://${missing}`), unix.message);
  const port = freePort();
  const tcp = await assertRejects(
    connectEngine({
      env: { DOCKER_HOST: `tcp://someone:s3cret@127.0.0.1:${port}` },
      home: "/nonexistent-home",
    }),
    DockerError,
  );
  ok(tcp.code === "unreachable", tcp.code);
  ok(tcp.message.includes(`tcp://127.0.0.1:${port}`), tcp.message);
  ok(!tcp.message.includes("s3cret"), tcp.message);
});

/**
 * A proxy in front of the engine's socket that records each request line (every request of
 * http.ts has a connection of its own); `close` ends it.
 */
async function recordingProxy(
  socket: string,
): Promise<{ path: string; lines: string[]; close: () => void }> {
  const dir = await Deno.makeTempDir({ prefix: "dfh-proxy-" });
  const path = `${dir}/docker.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const lines: string[] = [];
  (async () => {
    for await (const client of listener) {
      (async () => {
        const engine = await Deno.connect({ transport: "unix", path: socket });
        let first = true;
        const toEngine = client.readable.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, out) {
              if (first) lines.push(new TextDecoder().decode(chunk).split("\r\n")[0]);
              first = false;
              out.enqueue(chunk);
            },
          }),
        ).pipeTo(engine.writable).catch(() => {});
        await Promise.all([toEngine, engine.readable.pipeTo(client.writable).catch(() => {})]);
      })();
    }
  })().catch(() => {});
  return {
    path,
    lines,
    close: () => {
      listener.close();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

Deno.test("engine: the container named at connect is inspected beside the ping, its answer used once", async () => {
  const theBed = await bed();
  ok(theBed.dockerHost.startsWith("unix://"), theBed.dockerHost);
  const proxy = await recordingProxy(theBed.dockerHost.slice("unix://".length));
  try {
    await withContainer("musl", async (id) => {
      const name = (await (await engineFor(theBed)).inspectContainer(id)).name;
      const engine = await connectEngine({
        env: { DOCKER_HOST: `unix://${proxy.path}` },
        home: "/nonexistent-home",
        container: name,
      });
      const pathOf = (line: string): string => line.split(" ")[1] ?? "";
      const asked = proxy.lines.map(pathOf);
      // Both were asked before the version was known: the inspection has none in its path.
      ok(asked.includes("/_ping"), JSON.stringify(asked));
      ok(asked.includes(`/containers/${name}/json`), JSON.stringify(asked));
      const info = await engine.inspectContainer(name);
      ok(info.id === id && info.running, JSON.stringify(info));
      const containerPaths = (): string[] =>
        proxy.lines.map(pathOf).filter((p) => p.endsWith(`/containers/${name}/json`));
      ok(containerPaths().length === 1, JSON.stringify(proxy.lines));
      // Used once: the next inspection asks the engine (versioned), and sees a stop.
      const stopped = await dockerCli(theBed, ["stop", "-t", "0", id]);
      ok(stopped.code === 0, stopped.stderr);
      const error = await assertRejects(engine.inspectContainer(name), DockerError);
      ok(error.code === "not-running", `${error.code}: ${error.message}`);
      ok(
        containerPaths().length === 2 &&
          containerPaths()[1] === `/v${engine.apiVersion}/containers/${name}/json`,
        JSON.stringify(proxy.lines),
      );
      engine.close();
    });
  } finally {
    proxy.close();
  }
});

Deno.test("engine: containers by name or id prefix; missing and stopped ones", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  await withContainer("glibc", async (id) => {
    const byId = await engine.inspectContainer(id.slice(0, 12));
    ok(byId.id === id && byId.running, JSON.stringify(byId));
    const byName = await engine.inspectContainer(byId.name);
    ok(byName.id === id);
    ok(byId.arch === "x86_64" && byId.platform === "linux/amd64", JSON.stringify(byId));
  });
  const missing = await assertRejects(
    engine.inspectContainer("dfh-no-such-container"),
    DockerError,
  );
  ok(missing.code === "not-found", missing.code);
  ok(missing.message.includes("'dfh-no-such-container'"), missing.message);

  const created = await dockerCli(theBed, [
    "create",
    "--network",
    "none",
    "--label",
    "dockerfuse-testbed=1",
    theBed.images.musl,
  ]);
  ok(created.code === 0, created.stderr);
  const stoppedId = created.stdout.trim();
  try {
    const stopped = await assertRejects(engine.inspectContainer(stoppedId), DockerError);
    ok(stopped.code === "not-running", stopped.code);
    ok(/not running/.test(stopped.message), stopped.message);
    const info = await engine.inspectContainer(stoppedId, { allowStopped: true });
    ok(!info.running && info.id === stoppedId);
    const exec = await assertRejects(engine.exec(stoppedId, ["true"]), DockerError);
    ok(exec.code === "not-running", `${exec.code}: ${exec.message}`);
  } finally {
    await dockerCli(theBed, ["rm", "-f", stoppedId]);
  }
});

Deno.test("engine: the architecture comes from the image (arm64 → aarch64)", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  const created = await dockerCli(theBed, [
    "create",
    "--platform",
    "linux/arm64",
    "--network",
    "none",
    "--label",
    "dockerfuse-testbed=1",
    theBed.images.arm64,
  ]);
  ok(created.code === 0, created.stderr);
  const id = created.stdout.trim();
  try {
    const info = await engine.inspectContainer(id, { allowStopped: true });
    ok(info.arch === "aarch64", info.arch);
    ok(info.platform.startsWith("linux/arm64"), info.platform);
  } finally {
    await dockerCli(theBed, ["rm", "-f", id]);
  }
});

Deno.test("engine: pathExists through HEAD on the archive endpoint", async () => {
  const engine = await engineFor(await bed());
  await withContainer("glibc", async (id) => {
    ok(await engine.pathExists(id, "/data/large.bin"));
    ok(await engine.pathExists(id, "/data"));
    ok(await engine.pathExists(id, "/lib64/ld-linux-x86-64.so.2"));
    ok(!(await engine.pathExists(id, "/data/no-such-file")));
  });
  await withContainer("static", async (id) => {
    ok(await engine.pathExists(id, "/pause"));
    ok(!(await engine.pathExists(id, "/lib64/ld-linux-x86-64.so.2")));
  });
});

Deno.test("engine: the precompressed bundle goes into a private dir made by a plain archive", async () => {
  const engine = await engineFor(await bed());
  const bundle = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${bundle}/lib`);
    const data = randomBytes(1024 * 1024 + 3);
    await Deno.writeFile(`${bundle}/deno`, data);
    await Deno.writeTextFile(`${bundle}/lib/ld.so`, "loader");
    const manifest = {
      buildId: "enginetest",
      files: [{ path: "deno", mode: 0o755 }, { path: "lib/ld.so", mode: 0o644 }],
    } as SatelliteManifest;
    const archive = await compressedBundle(bundle, manifest);
    ok(archive !== undefined);
    await withContainer("glibc", async (id) => {
      await engine.upload(id, "/tmp", [{ path: ".dockerfuse-t", type: "directory", mode: 0o700 }], {
        gzip: false,
      });
      const progress: [number, number][] = [];
      await engine.uploadArchiveFile(id, "/tmp/.dockerfuse-t", archive!, {
        onProgress: (sent, total) => progress.push([sent, total]),
      });
      const [lastSent, total] = progress[progress.length - 1];
      ok(lastSent === total && total === (await Deno.stat(archive!)).size, String(progress));
      const dir = "/tmp/.dockerfuse-t";
      const stat = await run(engine, id, [
        "stat",
        "-c",
        "%n %a %u:%g",
        dir,
        `${dir}/deno`,
        `${dir}/lib`,
        `${dir}/lib/ld.so`,
      ]);
      ok(stat.code === 0, stat.stderr);
      ok(
        stat.stdout ===
          `${dir} 700 0:0\n${dir}/deno 700 0:0\n${dir}/lib 700 0:0\n${dir}/lib/ld.so 600 0:0\n`,
        stat.stdout,
      );
      const session = await engine.exec(id, ["cat", `${dir}/deno`]);
      await session.stdin.close();
      ok((await sha256(await readAll(session.stdout))) === (await sha256(data)), "content");
      ok((await session.exited).code === 0);
    });
  } finally {
    await Deno.remove(bundle, { recursive: true });
  }
});

Deno.test("engine: upload a tree (plain and gzip) and read it back", async () => {
  const engine = await engineFor(await bed());
  await withContainer("glibc", async (id) => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    for (const gzip of [false, true]) {
      const progress: [number, number][] = [];
      const root = gzip ? "up-gz" : "up-plain";
      await engine.upload(id, "/tmp", [
        { path: root, type: "directory", mode: 0o700 },
        { path: `${root}/sub`, type: "directory", mode: 0o750, uid: 65534, gid: 65534 },
        { path: `${root}/sub/blob`, type: "file", mode: 0o600, data },
        { path: `${root}/tool`, type: "file", mode: 0o700, data: new TextEncoder().encode("x") },
      ], { gzip, onProgress: (sent, total) => progress.push([sent, total]) });
      ok(progress.length > 0, "no progress reported");
      const [lastSent, total] = progress[progress.length - 1];
      ok(lastSent === total && total > 0, JSON.stringify(progress.slice(-2)));
      if (gzip) ok(total > data.length, "random data does not shrink: gzip size must exceed");
      const stat = await run(engine, id, [
        "stat",
        "-c",
        "%n %a %u:%g",
        `/tmp/${root}`,
        `/tmp/${root}/sub`,
        `/tmp/${root}/sub/blob`,
        `/tmp/${root}/tool`,
      ]);
      ok(stat.code === 0, stat.stderr);
      ok(
        stat.stdout ===
          `/tmp/${root} 700 0:0\n/tmp/${root}/sub 750 65534:65534\n` +
            `/tmp/${root}/sub/blob 600 0:0\n/tmp/${root}/tool 700 0:0\n`,
        stat.stdout,
      );
      const session = await engine.exec(id, ["cat", `/tmp/${root}/sub/blob`]);
      await session.stdin.close();
      const back = await readAll(session.stdout);
      ok((await sha256(back)) === (await sha256(data)), "content differs");
      ok((await session.exited).code === 0);
    }
  });
});

async function roundTrip(engine: Engine, id: string, size: number): Promise<void> {
  const data = randomBytes(size);
  const session = await engine.exec(id, ["cat"]);
  const writing = (async () => {
    const writer = session.stdin.getWriter();
    for (let at = 0; at < data.length; at += 1024 * 1024) {
      await writer.write(data.subarray(at, at + 1024 * 1024));
    }
    await writer.close();
  })();
  const [back, stderr] = await Promise.all([readAll(session.stdout), readAll(session.stderr)]);
  await writing;
  ok(back.length === data.length, `got ${back.length} of ${data.length} bytes`);
  ok((await sha256(back)) === (await sha256(data)), "echoed bytes differ");
  ok(stderr.length === 0, text(stderr));
  const { code } = await session.exited;
  ok(code === 0, `cat exited with ${code}`);
}

Deno.test("exec: 64 MiB through stdin → cat → stdout, glibc and musl", async () => {
  const engine = await engineFor(await bed());
  for (const kind of ["glibc", "musl"] as const) {
    await withContainer(kind, (id) => roundTrip(engine, id, 64 * 1024 * 1024));
  }
});

Deno.test("exec: stderr kept apart, exit code, user and environment", async () => {
  const engine = await engineFor(await bed());
  await withContainer("musl", async (id) => {
    const result = await run(engine, id, [
      "sh",
      "-c",
      'echo "out $FOO"; echo err >&2; id -u; exit 7',
    ], { env: { FOO: "bar baz" }, user: "nobody" });
    ok(result.stdout === "out bar baz\n65534\n", result.stdout);
    ok(result.stderr === "err\n", result.stderr);
    ok(result.code === 7, `code ${result.code}`);
    const missing = await run(engine, id, ["/no/such/binary"]);
    ok(missing.code !== 0 && missing.code !== null, `code ${missing.code}`);
  });
});

Deno.test("exec: kill tears the session down; the process sees EOF and ends", async () => {
  const engine = await engineFor(await bed());
  await withContainer("musl", async (id) => {
    const session = await engine.exec(id, ["sh", "-c", "echo ready; cat >/dev/null; echo gone"]);
    const reader = session.stdout.getReader();
    const first = await reader.read();
    ok(text(first.value ?? new Uint8Array()) === "ready\n");
    session.kill();
    const rest = await reader.read();
    ok(rest.done === true);
    await session.exited;
    // the process ends because its stdin closed with the connection
    let left = "";
    for (let attempt = 0; attempt < 50; attempt++) {
      left = (await run(engine, id, ["sh", "-c", "ps | grep -c '[c]at >/dev/null' || true"]))
        .stdout.trim();
      if (left === "0") break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    ok(left === "0", `the killed session's process is still running (${left})`);
  });
});

Deno.test("exec: the dockerode transport gives the same bytes", async () => {
  const engine = await engineFor(await bed(), { execTransport: "dockerode" });
  await withContainer("musl", (id) => roundTrip(engine, id, 4 * 1024 * 1024));
});

Deno.test("exec: the stream ends when the container is killed", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  await withContainer("musl", async (id) => {
    const session = await engine.exec(id, ["cat"]);
    // Kill only once cat runs (an echo comes back); earlier, the engine reports a failed start.
    const writer = session.stdin.getWriter();
    await writer.write(new TextEncoder().encode("up\n"));
    const reader = session.stdout.getReader();
    const echo = await reader.read();
    ok(new TextDecoder().decode(echo.value) === "up\n", "cat did not echo");
    const killed = await dockerCli(theBed, ["kill", id]);
    ok(killed.code === 0, killed.stderr);
    let rest = 0;
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += r.value.length;
    ok(rest === 0, `${rest} bytes after the kill`);
    const { code } = await session.exited;
    ok(code !== 0, `code ${code}`);
  });
});
