// Security defaults: the satellite's files are private and gone once it runs, mounts are
// nosuid,nodev with default_permissions and allow_other only on request, credentials never printed.
// (TLS verification against a wrong CA is checked in faults_test.ts, which has the TLS engine.)

import { cliRunArgs } from "../../src/cli/launch.ts";
import { deepStrictEqual, ok } from "node:assert/strict";
import { bundleEntries, readManifest } from "../../src/docker/satellite.ts";
import { cli, containerCommands, docker, satellitePid, withMount } from "./helpers.ts";

const BUNDLE = new URL("../../dist/satellite/x86_64", import.meta.url).pathname;

/** The options column of /proc/mounts for `mountpoint`. */
async function mountOptions(mountpoint: string): Promise<string[]> {
  const line = (await Deno.readTextFile("/proc/mounts")).split("\n")
    .find((l) => l.split(" ")[1] === mountpoint);
  ok(line, `${mountpoint} is not in /proc/mounts`);
  return line.split(" ")[3]!.split(",");
}

Deno.test("satellite: uploaded 0700/0600 into a fresh private dir, deleted once it runs", async () => {
  // What is uploaded: the private dir and its subdirs 0700, executables 0700, the rest 0600.
  const manifest = await readManifest(BUNDLE);
  const entries = await bundleEntries(BUNDLE, manifest, ".dockerfuse-test", { uid: 0, gid: 0 });
  for (const e of entries) {
    const want = e.type === "directory" ? 0o700 : [0o700, 0o600];
    ok(
      Array.isArray(want) ? want.includes(e.mode) : e.mode === want,
      `${e.path}: mode ${e.mode.toString(8)}`,
    );
  }
  const dirs: string[] = [];
  for (let round = 0; round < 2; round++) {
    await withMount("musl", async (m) => {
      const pid = satellitePid(m);
      const cmd = (await containerCommands(m.container)).find((c) => c.includes("--self"));
      ok(cmd, "no satellite command line with --self");
      const self = /--self (\S+)/.exec(cmd)![1]!;
      dirs.push(self);
      ok(/\/\.dockerfuse-[0-9a-f]{8,}$/.test(self), self);
      const ls = await docker(["exec", m.container, "ls", "-d", self], false);
      ok(ls.code !== 0, `${self} still exists while the satellite runs`);
      const exe = await docker(["exec", m.container, "readlink", `/proc/${pid}/exe`]);
      ok(exe.stdout.includes("(deleted)"), `satellite executable not unlinked: ${exe.stdout}`);
      const diff = await docker(["diff", m.container]);
      ok(!diff.stdout.includes("dockerfuse"), diff.stdout);
    });
  }
  ok(dirs[0] !== dirs[1], `the private dir was reused: ${dirs}`);
});

Deno.test("mount options: nosuid,nodev,default_permissions; allow_other only when asked", async () => {
  await withMount("musl", async (m) => {
    const options = await mountOptions(m.mountpoint);
    for (const o of ["nosuid", "nodev", "default_permissions"]) {
      ok(options.includes(o), `${o} missing: ${options}`);
    }
    ok(!options.includes("allow_other"), `allow_other without asking: ${options}`);
  });
  await withMount("musl", async (m) => {
    const options = await mountOptions(m.mountpoint);
    ok(options.includes("allow_other"), `${options}`);
    ok(options.includes("nosuid") && options.includes("nodev"), `${options}`);
  }, { args: ["--allow-other"] });
});

Deno.test("credentials in DOCKER_HOST are never printed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dfh-cred-" });
  try {
    for (const args of [["mount", "c", dir], ["mount", "--debug", "c", dir]]) {
      const out = await new Deno.Command(Deno.execPath(), {
        args: cliRunArgs(args),
        env: { DOCKER_HOST: "tcp://alice:s3cr3t-pw@127.0.0.1:9", DOCKER_TLS_VERIFY: "" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
      deepStrictEqual(out.code, 3, text);
      ok(!text.includes("s3cr3t"), `the password was printed:\n${text}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // Nor on the paths that never reach the engine, with the same secret in the environment.
  for (const args of [["version"], ["version", "--json"], ["unmount", dir]]) {
    const r = await cli(args, { DOCKER_HOST: "tcp://alice:s3cr3t-pw@127.0.0.1:9" });
    const text = r.stdout + r.stderr;
    ok(text.length > 0, `${args.join(" ")} printed nothing`);
    ok(!text.includes("s3cr3t"), `${args.join(" ")} printed the password:\n${text}`);
  }
});
