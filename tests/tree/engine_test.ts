/**
 * `dockerfuse engine` against the real engine and FUSE: containers/ (lazy attach, events,
 * round trips, vanished containers), images/ (read-only helpers), nothing left behind (SIGTERM,
 * SIGKILL + next start), and the bound on satellites running at once.
 *
 * Figures (time until a change shows, first image access) are printed, never asserted.
 */

import { deepStrictEqual, equal, match, notEqual, ok, rejects } from "node:assert/strict";
import {
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";
import {
  containersRunningSatellites,
  docker,
  fullId,
  helperContainers,
  helperImages,
  isMounted,
  readInside,
  sh,
  startEngine,
  until,
} from "./harness.ts";

const tag = crypto.randomUUID().slice(0, 8);
let bed: TestBed | undefined;
async function testBed(): Promise<TestBed> {
  return bed ??= await ensureTestBed({ kinds: ["musl"] });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out;
}

Deno.test("engine: containers/ follows the engine and round-trips files", async () => {
  const b = await testBed();
  const first = `dfe-tree-${tag}-a`;
  const second = `dfe-tree-${tag}-b`;
  await startTestContainer(b, "musl", { name: first });
  const run = await startEngine(["--idle-timeout", "30"]);
  try {
    const containers = `${run.mountpoint}/containers`;
    ok((await names(containers)).includes(first));

    // A stat of the container's directory deploys nothing.
    const before = run.stderr();
    ok((await Deno.stat(`${containers}/${first}`)).isDirectory);
    equal(run.stderr().slice(before.length).includes("Attaching"), false);

    // Started afterwards: shows, also to a lookup whose ENOENT the kernel had cached (the
    // start event invalidates it).
    equal(await exists(`${containers}/${second}`), false);
    const runAt = performance.now();
    await startTestContainer(b, "musl", { name: second });
    const runMs = Math.round(performance.now() - runAt);
    const shown = await until(`${second} in containers/`, () => exists(`${containers}/${second}`));
    ok((await names(containers)).includes(second));
    console.log(
      `figure: a started container showed ${shown} ms after 'docker run -d' returned ` +
        `(${runMs} ms)`,
    );

    // Host → container and container → host.
    await Deno.writeTextFile(`${containers}/${first}/tmp/from-host`, "written on the host\n");
    equal(await readInside(first, "/tmp/from-host"), "written on the host\n");
    await docker(["exec", first, "sh", "-c", "echo written inside > /tmp/from-inside"]);
    equal(
      await Deno.readTextFile(`${containers}/${first}/tmp/from-inside`),
      "written inside\n",
    );
    equal(
      await Deno.readTextFile(`${containers}/${second}/data/hello.txt`),
      "hello from musl\n",
    );
    // Changes of names round-trip too.
    const ops = await sh(
      run.mountpoint,
      `D="$M/containers/${first}/tmp" && mkdir "$D/d" && echo x > "$D/d/f" && mv "$D/d/f" "$D/d/g" ` +
        `&& ln -s g "$D/d/l" && rm "$D/d/l" && rm -r "$D/d"`,
    );
    equal(ops.code, 0, ops.stderr);
    equal((await docker(["exec", first, "ls", "/tmp"])).stdout.includes("d\n"), false);

    // Removed: its name goes, an open file answers EIO, a lookup ENOENT.
    const open = await Deno.open(`${containers}/${second}/tmp/open-file`, {
      write: true,
      create: true,
    });
    const rmAt = performance.now();
    await docker(["rm", "-f", second]);
    const rmMs = Math.round(performance.now() - rmAt);
    const gone = await until(
      `${second} gone from containers/`,
      async () => !(await names(containers)).includes(second),
    );
    console.log(
      `figure: a removed container disappeared ${gone} ms after 'docker rm -f' returned ` +
        `(${rmMs} ms)`,
    );
    await rejects(
      open.write(new TextEncoder().encode("too late")),
      (error: Error) => /EIO|Input\/output error/.test(`${error.name} ${error.message}`),
    );
    open.close();
    equal(await exists(`${containers}/${second}`), false);
    equal(await exists(`${containers}/${second}/data`), false);

    // Renamed: the new name shows, the old one goes.
    const renamed = `${first}-renamed`;
    await docker(["rename", first, renamed]);
    const shownRenamed = await until(`${renamed} in containers/`, async () => {
      const now = await names(containers);
      return now.includes(renamed) && !now.includes(first);
    });
    console.log(`figure: a renamed container showed ${shownRenamed} ms after 'docker rename'`);
    equal(
      await Deno.readTextFile(`${containers}/${renamed}/tmp/from-host`),
      "written on the host\n",
    );
    await docker(["rename", renamed, first]);

    equal(await run.stop("SIGTERM"), 0);
    equal(await isMounted(run.mountpoint), false);
  } finally {
    await run.cleanup();
    await removeTestContainer(b, `${first}-renamed`);
    await removeTestContainer(b, first);
    await removeTestContainer(b, second);
  }
});

Deno.test("engine: images/ serve a test image read-only; its helper goes on SIGTERM", async () => {
  const b = await testBed();
  const helpersBefore = new Set(await helperContainers());
  const run = await startEngine();
  try {
    const ref = b.images.musl; // "dockerfuse-test/musl:<hash>": a subdirectory per "/"
    const root = `${run.mountpoint}/images/${ref}`;
    ok(
      (await names(`${run.mountpoint}/images/dockerfuse-test`)).includes(ref.split("/")[1]),
    );
    const started = performance.now();
    equal(await Deno.readTextFile(`${root}/data/hello.txt`), "hello from musl\n");
    console.log(
      `figure: first access to an image took ${Math.round(performance.now() - started)} ms`,
    );
    equal(
      await Deno.readTextFile(`${root}/data/dir/nested.txt`),
      "nested file in the musl image\n",
    );
    const write = await sh(run.mountpoint, `echo x > "$M/images/${ref}/data/new"`);
    notEqual(write.code, 0);
    match(write.stderr, /Read-only file system/);
    const touch = await sh(run.mountpoint, `touch "$M/images/${ref}/data/hello.txt"`);
    match(touch.stderr, /Read-only file system/);
    // Tagged and untagged: the new reference shows under its repository, then goes.
    const extra = `dfe-tree-${tag}/tagged:v1`;
    await docker(["tag", ref, extra]);
    const repoDir = `${run.mountpoint}/images/dfe-tree-${tag}`;
    const tagged = await until(
      `${extra} in images/`,
      async () => (await exists(repoDir)) && (await names(repoDir)).includes("tagged:v1"),
    );
    console.log(`figure: a new tag showed ${tagged} ms after 'docker tag'`);
    await docker(["rmi", extra]);
    const untagged = await until(
      `${extra} gone from images/`,
      async () => !(await exists(repoDir)),
    );
    console.log(`figure: a removed tag disappeared ${untagged} ms after 'docker rmi'`);

    const during = (await helperContainers()).filter((id) => !helpersBefore.has(id));
    equal(during.length, 1, "one helper container serves the image");

    equal(await run.stop("SIGTERM"), 0);
    equal(await isMounted(run.mountpoint), false);
    const after = (await helperContainers()).filter((id) => !helpersBefore.has(id));
    deepStrictEqual(after, []);
  } finally {
    await run.cleanup();
    await docker(["rmi", `dfe-tree-${tag}/tagged:v1`], false);
  }
});

Deno.test("engine: a stopped container reads from a snapshot removed afterwards", async () => {
  const b = await testBed();
  const name = `dfe-tree-${tag}-stopped`;
  await startTestContainer(b, "musl", { name });
  await docker(["exec", name, "sh", "-c", "echo before the stop > /tmp/state"]);
  await docker(["stop", "-t", "0", name]);
  const imagesBefore = new Set(await helperImages());
  const helpersBefore = new Set(await helperContainers());
  const run = await startEngine();
  try {
    const dir = `${run.mountpoint}/containers/${name}`;
    equal((await Deno.stat(dir)).mode! & 0o777, 0o555);
    const started = performance.now();
    equal(await Deno.readTextFile(`${dir}/tmp/state`), "before the stop\n");
    console.log(
      `figure: first access to a stopped container took ${
        Math.round(performance.now() - started)
      } ms`,
    );
    const write = await sh(run.mountpoint, `echo x > "$M/containers/${name}/tmp/state"`);
    match(write.stderr, /Read-only file system/);
    equal(await run.stop("SIGTERM"), 0);
    deepStrictEqual((await helperContainers()).filter((id) => !helpersBefore.has(id)), []);
    const added = (await helperImages()).filter((id) => !imagesBefore.has(id));
    deepStrictEqual(added, [], "the snapshot image was removed");
  } finally {
    await run.cleanup();
    await removeTestContainer(b, name);
  }
});

Deno.test("engine: a SIGKILLed client's helpers are removed at the next start", async () => {
  const b = await testBed();
  const stopped = `dfe-tree-${tag}-killed`;
  await startTestContainer(b, "musl", { name: stopped });
  await docker(["stop", "-t", "0", stopped]);
  const helpersBefore = new Set(await helperContainers());
  const imagesBefore = new Set(await helperImages());
  const mountpoint = await Deno.makeTempDir({ prefix: "dockerfuse-tree-" });
  const first = await startEngine([], mountpoint);
  try {
    equal(
      await Deno.readTextFile(`${mountpoint}/images/${b.images.musl}/data/hello.txt`),
      "hello from musl\n",
    );
    equal(
      await Deno.readTextFile(`${mountpoint}/containers/${stopped}/data/hello.txt`),
      "hello from musl\n",
    );
    equal(await first.stop("SIGKILL"), 137);
    const left = (await helperContainers()).filter((id) => !helpersBefore.has(id));
    equal(left.length, 2, "the killed client left its helpers");
    const leftImages = (await helperImages()).filter((id) => !imagesBefore.has(id));
    equal(leftImages.length, 1, "the killed client left its snapshot");
    const second = await startEngine([], mountpoint); // also recovers the stale mount
    try {
      deepStrictEqual((await helperContainers()).filter((id) => !helpersBefore.has(id)), []);
      deepStrictEqual((await helperImages()).filter((id) => !imagesBefore.has(id)), []);
      match(second.stderr(), /Removed helper container/);
      match(second.stderr(), /Removed snapshot image/);
      equal(await second.stop("SIGTERM"), 0);
      equal(await isMounted(mountpoint), false);
    } finally {
      await second.cleanup();
    }
  } finally {
    await first.cleanup();
    await removeTestContainer(b, stopped);
    await Deno.remove(mountpoint, { recursive: true }).catch(() => {});
  }
});

Deno.test("engine: an idle satellite is detached; a stat then attaches nothing", async () => {
  const b = await testBed();
  const name = `dfe-tree-${tag}-idle`;
  await startTestContainer(b, "musl", { name });
  const ids = new Set([await fullId(name)]);
  const run = await startEngine(["--idle-timeout", "1"]);
  try {
    const dir = `${run.mountpoint}/containers/${name}`;
    equal(await Deno.readTextFile(`${dir}/data/hello.txt`), "hello from musl\n");
    equal((await containersRunningSatellites(ids)).size, 1);
    const idle = await until(
      "the idle detach",
      async () => (await containersRunningSatellites(ids)).size === 0,
    );
    console.log(`figure: the satellite was gone ${idle} ms after the last use (idle timeout 1 s)`);
    match(run.stderr(), /Detached container '.*' \(idle\)/);
    const attaches = run.stderr().split("Attaching").length;
    ok((await Deno.stat(dir)).isDirectory);
    equal(run.stderr().split("Attaching").length, attaches, "a stat attached nothing");
    equal((await containersRunningSatellites(ids)).size, 0);
    equal(await run.stop("SIGTERM"), 0);
  } finally {
    await run.cleanup();
    await removeTestContainer(b, name);
  }
});

Deno.test("engine: at most --max-attached satellites while a script touches 20 containers", async () => {
  const b = await testBed();
  const max = 3;
  const names20 = Array.from({ length: 20 }, (_, i) => `dfe-tree-${tag}-m${i}`);
  const ids = new Set<string>();
  try {
    for (const name of names20) {
      await startTestContainer(b, "musl", { name });
      ids.add(await fullId(name));
    }
    const run = await startEngine(["--max-attached", String(max), "--idle-timeout", "60"]);
    try {
      let most = 0;
      let sampling = true;
      let samples = 0;
      const sampler = (async () => {
        while (sampling) {
          most = Math.max(most, (await containersRunningSatellites(ids)).size);
          samples++;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      })();
      const script = names20.map((n) => `cat "$M/containers/${n}/data/hello.txt"`).join(" && ");
      const out = await sh(run.mountpoint, script);
      sampling = false;
      await sampler;
      equal(out.code, 0, out.stderr);
      equal(out.stdout, "hello from musl\n".repeat(20));
      console.log(`figure: at most ${most} satellites at once over ${samples} samples`);
      ok(most >= 1, "the sampler saw satellites");
      ok(most <= max, `${most} satellites ran at once`);
      equal(await run.stop("SIGTERM"), 0);
      // A satellite ends when its stdin closes, a moment after the client exits.
      let left = (await containersRunningSatellites(ids)).size;
      for (let i = 0; i < 100 && left > 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        left = (await containersRunningSatellites(ids)).size;
      }
      equal(left, 0, "satellites left running 10 s after the client exited");
    } finally {
      await run.cleanup();
    }
  } finally {
    for (const name of names20) await removeTestContainer(b, name);
  }
});
