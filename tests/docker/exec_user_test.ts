// The satellite's exec user and exec failures in containers shaped like real images, on Docker
// and on Podman: names and uid[:gid] resolve like `docker exec --user`; what the container
// cannot resolve, and what the runtime refuses, is reported in its own words.

import { equal, match, ok, rejects } from "node:assert/strict";
import { deploySatellite, DockerError, type Engine } from "../../src/docker/mod.ts";
import { resolveUser } from "../../src/docker/satellite.ts";
import {
  type BedKind,
  ensurePodmanBed,
  ensureTestBed,
  NONROOT_UID,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";
import { engineFor } from "./helpers.ts";

const ENGINES: [string, (kinds: BedKind[]) => Promise<TestBed>][] = [
  ["docker", (kinds) => ensureTestBed({ kinds })],
  ["podman", (kinds) => ensurePodmanBed({ kinds })],
];

async function withEngineContainer(
  bed: TestBed,
  kind: BedKind,
  fn: (engine: Engine, id: string) => Promise<void>,
): Promise<void> {
  const id = await startTestContainer(bed, kind);
  const engine = await engineFor(bed);
  try {
    await fn(engine, id);
  } finally {
    engine.close();
    await removeTestContainer(bed, id);
  }
}

/** A bundle of one file whose command does not exist in any container. */
async function missingLoaderBundle(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dfh-bundle-" });
  await Deno.writeTextFile(`${dir}/x`, "not run\n");
  await Deno.writeTextFile(
    `${dir}/manifest.json`,
    JSON.stringify({
      formatVersion: 1,
      arch: "x86_64",
      mode: "runtime",
      buildId: "test",
      files: [{ path: "x", mode: 0o755 }],
      command: ["/nonexistent-loader", "{dir}/x"],
      loaderCommand: ["/nonexistent-loader", "{dir}/x"],
      glibcProbe: [],
      env: {},
    }),
  );
  return dir;
}

for (const [name, bedFor] of ENGINES) {
  Deno.test(`exec user (${name}): the runtime's refusal of a user is an exec error in its words`, async () => {
    const bed = await bedFor(["scratch"]);
    await withEngineContainer(bed, "scratch", async (engine, id) => {
      const error = await engine.exec(id, ["/pause"], { user: "root", awaitStart: true }).then(
        () => undefined,
        (e) => e,
      );
      ok(error instanceof DockerError, String(error));
      equal(error.code, "exec");
      match(error.message, /^Cannot run '\/pause' in container .*: the (runtime|engine) refused/);
      match(error.message, /unable to find user root/);
      // Numeric, the same exec starts.
      const session = await engine.exec(id, ["/pause"], { user: "0:0", awaitStart: true });
      session.kill();
      await session.exited;
    });
  });

  Deno.test(`exec user (${name}): names need the container's /etc/passwd, numbers do not`, async () => {
    const bed = await bedFor(["scratch", "nonroot"]);
    await withEngineContainer(bed, "scratch", async (engine, id) => {
      equal(JSON.stringify(await resolveUser(engine, id, "0:0")), '{"uid":0,"gid":0}');
      equal(JSON.stringify(await resolveUser(engine, id, "4321")), '{"uid":4321,"gid":0}');
      equal(JSON.stringify(await resolveUser(engine, id)), '{"uid":0,"gid":0}');
      equal(JSON.stringify(await resolveUser(engine, id, "")), '{"uid":0,"gid":0}');
      const noPasswd = await rejects(resolveUser(engine, id, "root", "web"), (e: unknown) => {
        ok(e instanceof DockerError && e.code === "user");
        match(e.message, /^Cannot run the satellite as 'root' in 'web': the container has no/);
        match(e.message, /\/etc\/passwd to look up user 'root'.*--user 0:0/);
        return true;
      });
      equal(noPasswd, undefined);
    });
    await withEngineContainer(bed, "nonroot", async (engine, id) => {
      const app = { uid: NONROOT_UID, gid: NONROOT_UID };
      equal(JSON.stringify(await resolveUser(engine, id, "app")), JSON.stringify(app));
      equal(
        JSON.stringify(await resolveUser(engine, id, String(NONROOT_UID))),
        JSON.stringify(app),
      );
      equal(
        JSON.stringify(await resolveUser(engine, id, "app:root")),
        JSON.stringify({ uid: NONROOT_UID, gid: 0 }),
      );
      await rejects(
        resolveUser(engine, id, "bob"),
        /no user 'bob' in the container's \/etc\/passwd/,
      );
      await rejects(resolveUser(engine, id, "app:staff"), /no group 'staff' in .*\/etc\/group/);
      await rejects(resolveUser(engine, id, "a b"), /not a user name or uid/);
    });
  });

  Deno.test(`exec user (${name}): a satellite the runtime cannot start is reported with the upload it leaves`, async () => {
    const bed = await bedFor(["scratch"]);
    const bundle = await missingLoaderBundle();
    try {
      await withEngineContainer(bed, "scratch", async (engine, id) => {
        const container = await engine.inspectContainer(id);
        const error = await deploySatellite(engine, container, bundle, { root: "/" }).then(
          () => undefined,
          (e) => e,
        );
        ok(error instanceof DockerError, String(error));
        equal(error.code, "exec");
        match(
          error.message,
          new RegExp(
            `^Cannot start the satellite in '${container.name}': the .* /nonexistent-loader`,
          ),
        );
        ok(!/frame/.test(error.message), error.message);
        const left = /its upload '(\/\.dockerfuse-[0-9a-f]{16})' is left/.exec(error.message);
        ok(left, error.message);
        ok(await engine.pathExists(id, left[1]), `${left[1]} should be there`);
      });
    } finally {
      await Deno.remove(bundle, { recursive: true });
    }
  });
}
