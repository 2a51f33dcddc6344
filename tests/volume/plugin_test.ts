// The volume plugin against the real engine: dockerd discovers it by its socket, containers use
// a container's filesystem as a volume.

import { deepStrictEqual, ok, rejects } from "node:assert/strict";
import {
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";
import {
  docker,
  isMounted,
  lockPluginTests,
  mountsBelow,
  type PluginProcess,
  startPlugin,
  TEST_DRIVER,
  uniqueSuffix,
  unmountAllBelow,
  waitFor,
} from "./helpers.ts";

interface Scene {
  bed: TestBed;
  musl: string;
  /** Container A, whose filesystem the volumes show. */
  a: string;
  driver: string;
  stateDir: string;
  plugin: PluginProcess;
  volumes: string[];
  containers: string[];
}

async function withScene(fn: (s: Scene) => Promise<void>): Promise<void> {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const suffix = uniqueSuffix();
  const stateDir = await Deno.makeTempDir({ prefix: "dockerfuse-plugin-" });
  const a = await startTestContainer(bed, "musl", { name: `dfh-vol-a-${suffix}` });
  const driver = TEST_DRIVER;
  const scene: Partial<Scene> = { bed, musl: bed.images.musl, a, driver, stateDir };
  scene.volumes = [];
  scene.containers = [];
  const lock = await lockPluginTests();
  try {
    scene.plugin = await startPlugin(driver, stateDir);
    await fn(scene as Scene);
  } finally {
    for (const c of scene.containers) await docker(["rm", "-f", c], false);
    for (const v of scene.volumes) await docker(["volume", "rm", "-f", v], false);
    await scene.plugin?.stop();
    await unmountAllBelow(stateDir);
    await removeTestContainer(bed, a);
    await Deno.remove(stateDir, { recursive: true }).catch(() => {});
    if (scene.plugin) await Deno.remove(scene.plugin.socket).catch(() => {});
    lock.release();
  }
}

/** `docker volume rm`; the cleanup then no longer asks for it (unknown names are slow). */
async function removeVolume(s: Scene, name: string): Promise<void> {
  await docker(["volume", "rm", name]);
  s.volumes = s.volumes.filter((v) => v !== name);
}

/** Names of the volumes the plugin has persisted. */
async function persisted(s: Scene): Promise<string[]> {
  const text = await Deno.readTextFile(`${s.stateDir}/volumes.json`);
  return JSON.parse(text).volumes.map((v: { name: string }) => v.name);
}

async function createVolume(s: Scene, name: string, opts: string[] = []): Promise<void> {
  s.volumes.push(name);
  await docker(["volume", "create", "-d", s.driver, "-o", `container=${s.a}`, ...opts, name]);
}

/** `docker run --rm --network none -v VOLUME:/v <musl> ARGS…` */
function runWith(s: Scene, volume: string, args: string[]) {
  return docker(["run", "--rm", "--network", "none", "-v", `${volume}:/v`, s.musl, ...args]);
}

Deno.test("volume plugin: B reads and writes A's files through a volume; rm leaves no mount", async () => {
  await withScene(async (s) => {
    const volume = `dfh-webfs-${uniqueSuffix()}`;
    await createVolume(s, volume);
    const started = performance.now();
    const read = await runWith(s, volume, ["cat", "/v/data/hello.txt"]);
    console.log(
      `docker run with a plugin volume, first read: ${Math.round(performance.now() - started)} ms`,
    );
    deepStrictEqual(read.stdout, "hello from musl\n");

    await runWith(s, volume, ["sh", "-c", 'printf "written by B" > /v/data/from-b.txt']);
    const inside = await docker(["exec", s.a, "cat", "/data/from-b.txt"]);
    deepStrictEqual(inside.stdout, "written by B");

    const mountpoint = `${s.stateDir}/volumes/${volume}`;
    ok(!(await isMounted(mountpoint)), "the last caller left but the volume stays mounted");
    const inspect = JSON.parse((await docker(["volume", "inspect", volume])).stdout);
    deepStrictEqual(inspect[0].Driver, s.driver);
    deepStrictEqual(inspect[0].Mountpoint, mountpoint);

    deepStrictEqual(await persisted(s), [volume]);
    await removeVolume(s, volume);
    deepStrictEqual(await mountsBelow(s.stateDir), []);
    await rejects(Deno.stat(mountpoint), Deno.errors.NotFound);
    deepStrictEqual(await persisted(s), []);
  });
});

Deno.test("volume plugin: a volume needs a container; errors reach the docker CLI", async () => {
  await withScene(async (s) => {
    const r = await docker([
      "volume",
      "create",
      "-d",
      s.driver,
      `dfh-nocontainer-${uniqueSuffix()}`,
    ], false);
    ok(r.code !== 0, r.stdout);
    ok(r.stderr.includes("'container' is required"), r.stderr);
    const volume = `dfh-gone-${uniqueSuffix()}`;
    s.volumes.push(volume);
    await docker(["volume", "create", "-d", s.driver, "-o", "container=dfh-no-such", volume]);
    const run = await docker(
      ["run", "--rm", "--network", "none", "-v", `${volume}:/v`, s.musl, "true"],
      false,
    );
    ok(run.code !== 0, run.stdout);
    ok(/Cannot mount volume .*dfh-no-such/.test(run.stderr), run.stderr);
    await removeVolume(s, volume);
  });
});

Deno.test("volume plugin: restart keeps the volume and re-mounts it for a running consumer", async () => {
  await withScene(async (s) => {
    const volume = `dfh-keep-${uniqueSuffix()}`;
    await createVolume(s, volume, ["-o", "path=/data", "-o", "readonly=true"]);
    const mountpoint = `${s.stateDir}/volumes/${volume}`;
    const b = `dfh-vol-b-${uniqueSuffix()}`;
    s.containers.push(b);
    await docker([
      "run",
      "-d",
      "--network",
      "none",
      "--name",
      b,
      "-v",
      `${volume}:/v`,
      s.musl,
      "sleep",
      "600",
    ]);
    ok(await isMounted(mountpoint));

    deepStrictEqual(await s.plugin.stop(), 0, s.plugin.stderr());
    deepStrictEqual(await mountsBelow(s.stateDir), [], "SIGTERM left a mount");
    await rejects(Deno.lstat(s.plugin.socket), Deno.errors.NotFound);

    s.plugin = await startPlugin(s.driver, s.stateDir);
    await waitFor("the re-mount", () => isMounted(mountpoint));
    const inspect = JSON.parse((await docker(["volume", "inspect", volume])).stdout);
    deepStrictEqual(inspect[0].Status.path, "/data");
    const read = await runWith(s, volume, ["cat", "/v/hello.txt"]);
    deepStrictEqual(read.stdout, "hello from musl\n");
    const write = await docker(
      ["run", "--rm", "--network", "none", "-v", `${volume}:/v`, s.musl, "touch", "/v/x"],
      false,
    );
    ok(write.code !== 0 && /read-only/i.test(write.stderr), write.stderr);

    await docker(["rm", "-f", b]);
    await waitFor("the unmount after the last caller", async () => !(await isMounted(mountpoint)));
    await removeVolume(s, volume);
    deepStrictEqual(await mountsBelow(s.stateDir), []);
  });
});
