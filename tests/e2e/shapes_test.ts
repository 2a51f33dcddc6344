// dockerfuse against containers shaped like what users run (tasks/testbed/shapes.ts), on Docker
// and on Podman: each one mounts as the CLI's defaults have it, a read/write/rename/remove round
// trip is checked from the container's side, the FUSE POSIX table runs in its writable
// directory, and nothing of the satellite is left (`docker diff`). A shape that cannot work
// fails with the message that says why and what would.

import { deepStrictEqual, equal, match, ok, rejects } from "node:assert/strict";
import { cliRunArgs } from "../../src/cli/launch.ts";
import {
  CAPABILITY_CASES,
  type ContainerShape,
  ENGINE_REFUSED_CASES,
  type EngineName,
  ensurePodmanBed,
  ensureTestBed,
  removeTestContainer,
  SHAPES,
  smallDataEntries,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";
import { POSIX_TABLE } from "../fuse/posix_table.ts";
import { startMount } from "./harness.ts";

const decoder = new TextDecoder();

/** The docker CLI against the bed's engine. */
async function cli(
  bed: TestBed,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("docker", {
    args: ["--host", bed.dockerHost, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** A file's contents read by the engine from inside the container, or undefined if absent. */
/**
 * A file's contents as the container's processes see it (through its first process's root on
 * this host: `docker cp` does not see Docker's tmpfs mounts); undefined when absent.
 */
async function readInside(bed: TestBed, id: string, path: string): Promise<string | undefined> {
  const r = await cli(bed, ["inspect", "-f", "{{.State.Pid}}", id]);
  ok(r.code === 0 && /^\d+$/.test(r.stdout.trim()), r.stderr);
  try {
    return await Deno.readTextFile(`/proc/${r.stdout.trim()}/root${path}`);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** `docker diff` lines, sorted (the engine lists them in no fixed order). */
async function diff(bed: TestBed, id: string): Promise<string[]> {
  const r = await cli(bed, ["diff", id]);
  equal(r.code, 0, r.stderr);
  return r.stdout.split("\n").filter((l) => l !== "").sort();
}

/** `error` with the end of what the client logged (the mount's own view of a failure). */
function withClientLog(error: unknown, stderr: string): never {
  const message = error instanceof Error ? error.message : String(error);
  throw new Error(`${message}\nclient stderr (end):\n${stderr.slice(-3000)}`, { cause: error });
}

function helloOf(kind: string): string {
  const entry = smallDataEntries(kind).find((e) => e.path === "hello.txt");
  ok(entry?.type === "file");
  return decoder.decode(entry.content);
}

async function mounts(bed: TestBed, shape: ContainerShape, t: Deno.TestContext): Promise<void> {
  const id = await startTestContainer(bed, shape.kind, { runArgs: [...shape.runArgs] });
  try {
    const before = await diff(bed, id);
    const m = await startMount(shape.kind, {
      container: id,
      args: ["--allow-other"],
      env: { DOCKER_HOST: bed.dockerHost },
    });
    try {
      const M = m.mountpoint;
      const hello = await Deno.readTextFile(`${M}/data/hello.txt`).catch((e) =>
        withClientLog(e, m.stderr())
      );
      equal(hello, helloOf(shape.kind));
      const W = `${M}${shape.writable}`;
      const inside = shape.writable!;
      await t.step("read/write/rename/remove round trip, seen inside", async () => {
        await Deno.mkdir(`${W}/round-trip`);
        await Deno.writeTextFile(`${W}/round-trip/f.txt`, "written through dockerfuse");
        await Deno.rename(`${W}/round-trip/f.txt`, `${W}/round-trip/g.txt`);
        equal(await Deno.readTextFile(`${W}/round-trip/g.txt`), "written through dockerfuse");
        equal(
          await readInside(bed, id, `${inside}/round-trip/g.txt`),
          "written through dockerfuse",
        );
        equal(await readInside(bed, id, `${inside}/round-trip/f.txt`), undefined);
        await Deno.remove(`${W}/round-trip`, { recursive: true });
        equal(await readInside(bed, id, `${inside}/round-trip/g.txt`), undefined);
      });
      const base = `${W}/dockerfuse-posix`;
      await Deno.mkdir(base);
      await Deno.chmod(base, 0o777);
      const refusedCases = new Set(ENGINE_REFUSED_CASES[bed.engine]);
      if (shape.withoutCapabilities?.includes(bed.engine)) {
        CAPABILITY_CASES.forEach((c) => refusedCases.add(c));
      }
      for (const [i, { name, run }] of POSIX_TABLE.entries()) {
        const refused = refusedCases.has(name);
        await t.step(
          `POSIX: ${name}${refused ? " (EPERM: no capability)" : ""}`,
          async () => {
            const dir = `${base}/${i}`;
            await Deno.mkdir(dir);
            await Deno.chmod(dir, 0o777);
            if (refused) await rejects(run(dir), /Operation not permitted|EPERM/);
            else await run(dir).catch((error) => withClientLog(error, m.stderr()));
          },
        );
      }
      await Deno.remove(base, { recursive: true });
      equal(await m.stop(), 0, m.stderr());
    } finally {
      await m.cleanup();
    }
    let left = (await diff(bed, id)).filter((l) => !before.includes(l));
    if (shape.leavesEmptyDir?.includes(bed.engine)) {
      // A known limit (see ContainerShape.leavesEmptyDir): exactly one, empty, directory.
      const dirs = left.filter((l) => /^A \/\.dockerfuse-[0-9a-f]{16}$/.test(l));
      equal(dirs.length, 1, left.join("\n"));
      left = left.filter((l) => !dirs.includes(l));
    }
    ok(!left.some((l) => l.includes(".dockerfuse")), `satellite files left:\n${left.join("\n")}`);
    deepStrictEqual(left.filter((l) => l !== `C ${shape.writable}`), [], left.join("\n"));
  } finally {
    await removeTestContainer(bed, id);
  }
}

async function refuses(bed: TestBed, shape: ContainerShape): Promise<void> {
  const id = await startTestContainer(bed, shape.kind, { runArgs: [...shape.runArgs] });
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-e2e-" });
  try {
    const before = await diff(bed, id);
    const out = await new Deno.Command(Deno.execPath(), {
      args: cliRunArgs(["mount", "--deploy", "upload", id, dir]),
      env: { DOCKER_HOST: bed.dockerHost },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = decoder.decode(out.stderr);
    ok(out.code !== 0, stderr);
    match(stderr, shape.refusal!);
    ok(!/frame of \d+ bytes/.test(stderr), stderr);
    deepStrictEqual(await diff(bed, id), before);
    // What the upload cannot do, the default (auto) does through the sidecar: it mounts, reads,
    // and the read-only root answers EROFS.
    const m = await startMount(shape.kind, { container: id, env: { DOCKER_HOST: bed.dockerHost } });
    try {
      match(m.stderr(), /sidecar/i);
      ok([...Deno.readDirSync(m.mountpoint)].length > 0, "the root lists nothing");
      await rejects(Deno.writeTextFile(`${m.mountpoint}/new`, "x"), /read-only|EROFS/i);
      equal(await m.stop(), 0, m.stderr());
    } finally {
      await m.cleanup();
    }
    deepStrictEqual(await diff(bed, id), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await removeTestContainer(bed, id);
  }
}

const ENGINES: [EngineName, (kinds: ContainerShape["kind"][]) => Promise<TestBed>][] = [
  ["docker", (kinds) => ensureTestBed({ kinds })],
  ["podman", (kinds) => ensurePodmanBed({ kinds })],
];

for (const [engine, bedFor] of ENGINES) {
  for (const shape of SHAPES.filter((s) => s.engines?.includes(engine) ?? true)) {
    const what = shape.writable
      ? "mounts, round trip and POSIX table"
      : "upload refused clearly, the sidecar mounts it";
    Deno.test(`e2e ${engine}, ${shape.name}: ${what}`, async (t) => {
      const bed = await bedFor([shape.kind]);
      if (shape.writable) await mounts(bed, shape, t);
      else await refuses(bed, shape);
    });
  }
}
