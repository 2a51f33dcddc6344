// deploySatellite with a stand-in bundle (a shell script) in the real test containers: command
// choice by glibc probe, private dir and modes, argv/env substitution, nothing left behind.

import {
  deploySatellite,
  DockerError,
  type Engine,
  hostPathOf,
  placeOnHost,
  type TarEntry,
} from "../../src/docker/mod.ts";
import { equal, ok } from "node:assert/strict";
import { assertRejects, bed, dockerCli, engineFor, readAll, withContainer } from "./helpers.ts";

const FAKE_SATELLITE = `#!/bin/sh
# Stand-in satellite: reports what it got, removes its dir like the real one, then echoes stdin.
echo "variant=$1"
shift
root=; self=
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --self) self=$2; shift 2 ;;
    *) shift ;;
  esac
done
echo "root=$root"
echo "self=$self"
echo "env=$FAKE_DIR"
stat -c '%n %a %u' "$self" "$self/fake.sh" "$self/lib" "$self/lib/data.txt"
rm -rf "$self"
echo removed
exec cat
`;

async function makeBundle(arch = "x86_64"): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "dfh-bundle-" });
  await Deno.writeTextFile(`${dir}/fake.sh`, FAKE_SATELLITE, { mode: 0o755 });
  await Deno.mkdir(`${dir}/lib`);
  await Deno.writeTextFile(`${dir}/lib/data.txt`, "data\n", { mode: 0o644 });
  await Deno.writeTextFile(
    `${dir}/manifest.json`,
    JSON.stringify({
      formatVersion: 1,
      arch,
      mode: "runtime",
      buildId: "test",
      files: [{ path: "fake.sh", mode: 0o755 }, { path: "lib/data.txt", mode: 0o644 }],
      command: ["/bin/sh", "{dir}/fake.sh", "command"],
      loaderCommand: ["/bin/sh", "{dir}/fake.sh", "loader"],
      glibcProbe: ["/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"],
      env: { FAKE_DIR: "{dir}/deno-dir" },
    }),
  );
  return dir;
}

/** Reads stdout lines until "removed", then checks the echo and ends the session. */
async function deployAndCheck(
  engine: Engine,
  id: string,
  options: { user?: string; placeOnHost?: boolean; log?: (message: string) => void },
): Promise<Map<string, string> & { stat: string[] }> {
  const bundle = await makeBundle();
  try {
    const container = await engine.inspectContainer(id);
    let progressed = false;
    const session = await deploySatellite(engine, container, bundle, {
      root: "/data",
      user: options.user,
      placeOnHost: options.placeOnHost,
      log: options.log,
      onProgress: () => progressed = true,
    });
    ok(progressed, "no upload progress reported");
    const reader = session.stdout.getReader();
    let output = "";
    while (!output.includes("removed\n")) {
      const { value, done } = await reader.read();
      if (done) {
        throw new Error(
          `satellite ended early: ${output}${
            new TextDecoder().decode(await readAll(session.stderr))
          }`,
        );
      }
      output += new TextDecoder().decode(value);
    }
    const writer = session.stdin.getWriter();
    await writer.write(new TextEncoder().encode("ping\n"));
    await writer.close();
    let echo = "";
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      echo += new TextDecoder().decode(value);
    }
    ok(echo === "ping\n", `echo: '${echo}'`);
    ok((await session.exited).code === 0);
    const fields = new Map<string, string>() as Map<string, string> & { stat: string[] };
    fields.stat = [];
    for (const line of output.trim().split("\n")) {
      const eq = line.indexOf("=");
      if (/^[a-z]+=/.test(line)) fields.set(line.slice(0, eq), line.slice(eq + 1));
      else if (line !== "removed") fields.stat.push(line);
    }
    return fields;
  } finally {
    await Deno.remove(bundle, { recursive: true });
  }
}

function checkPrivateDir(
  fields: Map<string, string> & { stat: string[] },
  parent: string,
  uid: number,
): string {
  const self = fields.get("self") ?? "";
  const prefix = parent === "/" ? "/.dockerfuse-" : `${parent}/.dockerfuse-`;
  ok(self.startsWith(prefix) && /^[0-9a-f]{16}$/.test(self.slice(prefix.length)), self);
  equal(fields.get("root"), "/data");
  equal(fields.get("env"), `${self}/deno-dir`);
  const expected = [
    `${self} 700 ${uid}`,
    `${self}/fake.sh 700 ${uid}`,
    `${self}/lib 700 ${uid}`,
    `${self}/lib/data.txt 600 ${uid}`,
  ];
  ok(fields.stat.join("\n") === expected.join("\n"), fields.stat.join("\n"));
  return self;
}

Deno.test("deploy: glibc container uses `command`, private dir in /, docker diff unchanged", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  await withContainer("glibc", async (id) => {
    const before = await dockerCli(theBed, ["diff", id]);
    const fields = await deployAndCheck(engine, id, {});
    equal(fields.get("variant"), "command");
    const self = checkPrivateDir(fields, "/", 0);
    ok(!(await engine.pathExists(id, self)), `${self} is left behind`);
    const after = await dockerCli(theBed, ["diff", id]);
    ok(after.stdout === before.stdout, `docker diff changed:\n${after.stdout}`);
  });
});

Deno.test("deploy: written from the host or through the archive API, the same private dir", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  await withContainer("glibc", async (id) => {
    const before = await dockerCli(theBed, ["diff", id]);
    // What went through the archive API: the private dir alone, or the whole bundle.
    const uploaded: string[] = [];
    const upload = engine.upload.bind(engine);
    engine.upload = (containerId, path, entries, options) => {
      uploaded.push(...entries.map((e) => e.path.replace(/^\.dockerfuse-[0-9a-f]+/, "D")));
      return upload(containerId, path, entries, options);
    };
    for (const placeOnHost of [true, false]) {
      const logs: string[] = [];
      uploaded.length = 0;
      const fields = await deployAndCheck(engine, id, { placeOnHost, log: (m) => logs.push(m) });
      equal(logs.join("\n"), "", "the host could not place the satellite");
      equal(
        uploaded.join(" "),
        placeOnHost ? "" : "D D/fake.sh D/lib D/lib/data.txt",
      );
      const self = checkPrivateDir(fields, "/", 0);
      ok(!(await engine.pathExists(id, self)), `${self} is left behind (${placeOnHost})`);
    }
    const after = await dockerCli(theBed, ["diff", id]);
    ok(after.stdout === before.stdout, `docker diff changed:\n${after.stdout}`);
  });
});

Deno.test("deploy: the host makes a private dir of root's and writes only into it, following no symlink", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  await withContainer("musl", async (id) => {
    const { pid } = await engine.inspectContainer(id);
    ok(pid !== undefined && pid > 0, "no pid for a running container");
    const sh = async (script: string): Promise<string> => {
      const r = await dockerCli(theBed, ["exec", id, "sh", "-c", script]);
      ok(r.code === 0, r.stderr);
      return r.stdout.trim();
    };
    await sh("mkdir -m 755 /real /other && ln -s /real /link && ln -s /other /real/taken");
    const place = (
      parent: string,
      name: string,
      entries: TarEntry[],
      onProgress?: (sent: number) => void,
    ): Promise<string | undefined> => placeOnHost({ pid, parent, name, entries, onProgress });
    const data = new TextEncoder().encode("hello\n");
    const entries: TarEntry[] = [
      { path: "lib", type: "directory", mode: 0o700 },
      { path: "lib/a.txt", type: "file", mode: 0o600, data },
    ];
    // Through a symlink, onto a name taken (by a symlink): refused, nothing made or followed.
    ok(/not a directory/i.test(await place("/link", "p1", entries) ?? ""));
    ok(/exists/i.test(await place("/real", "taken", entries) ?? ""));
    // Failing half way (a name twice): what was made is removed, the private dir too.
    ok(/exists/i.test(await place("/real", "p2", [...entries, entries[1]]) ?? ""));
    ok(/before its directory/.test(await place("/real", "p3", entries.slice(1)) ?? ""));
    const tree = "find /real /other /link | sort | tr '\\n' ' '";
    equal(await sh(tree), "/link /other /real /real/taken");
    // Placed: the private dir 0700, exact modes, owned by root, and progress reported.
    let progress = 0;
    equal(await place("/real", "p4", entries, (sent) => progress = sent), undefined);
    equal(progress, data.length);
    equal(
      await sh("stat -c '%n %a %u:%g' /real/p4 /real/p4/lib /real/p4/lib/a.txt"),
      "/real/p4 700 0:0\n/real/p4/lib 700 0:0\n/real/p4/lib/a.txt 600 0:0",
    );
    equal(await Deno.readTextFile(`${hostPathOf(pid, "/real")}/p4/lib/a.txt`), "hello\n");
    // A source naming its host file is copied by the kernel (bigger than one sendfile call),
    // with progress; a file shorter than announced is refused and removed.
    const host = await Deno.makeTempFile({ prefix: "dockerfuse-place-" });
    try {
      const bytes = new Uint8Array(9 * 1024 * 1024 + 123).map((_, i) => (i * 7) % 251);
      await Deno.writeFile(host, bytes);
      const fromFile = (length: number): TarEntry => ({
        path: "big.bin",
        type: "file",
        mode: 0o700,
        source: {
          length,
          file: host,
          chunks: () => {
            throw new Error("a host file is not read through chunks");
          },
        },
      });
      const steps: number[] = [];
      equal(await place("/real", "p5", [fromFile(bytes.length)], (n) => steps.push(n)), undefined);
      equal(steps.at(-1), bytes.length);
      ok(steps.length >= 2, `progress ${steps}`);
      const copied = await Deno.readFile(`${hostPathOf(pid, "/real")}/p5/big.bin`);
      ok(copied.length === bytes.length && copied.every((b, i) => b === bytes[i]), "copy differs");
      equal(await sh("stat -c '%a %u:%g' /real/p5/big.bin"), "700 0:0");
      ok(/gave 9437307 bytes, not 9437308/.test(
        await place("/real", "p6", [fromFile(bytes.length + 1)]) ?? "",
      ));
      equal(await sh("test -e /real/p6 && echo left || echo gone"), "gone");
    } finally {
      await Deno.remove(host);
    }
  });
});

Deno.test("deploy: musl container (no glibc) uses `loaderCommand`", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  await withContainer("musl", async (id) => {
    const before = await dockerCli(theBed, ["diff", id]);
    const fields = await deployAndCheck(engine, id, {});
    equal(fields.get("variant"), "loader");
    checkPrivateDir(fields, "/", 0);
    const after = await dockerCli(theBed, ["diff", id]);
    ok(after.stdout === before.stdout, `docker diff changed:\n${after.stdout}`);
  });
});

Deno.test("deploy: a non-root user gets its own private dir under /tmp", async () => {
  const engine = await engineFor(await bed());
  await withContainer("musl", async (id) => {
    const fields = await deployAndCheck(engine, id, { user: "nobody" });
    checkPrivateDir(fields, "/tmp", 65534);
  });
  await withContainer("musl", async (id) => {
    const fields = await deployAndCheck(engine, id, { user: "65534:65534" });
    checkPrivateDir(fields, "/tmp", 65534);
  });
});

Deno.test("deploy: a read-only rootfs gets the satellite through a writable volume or an exec tmpfs", async () => {
  const theBed = await bed();
  const engine = await engineFor(theBed);
  const start = async (extra: string[]): Promise<string> => {
    const started = await dockerCli(theBed, [
      "run",
      "-d",
      "--network",
      "none",
      "--label",
      "dockerfuse-testbed=1",
      "--read-only",
      ...extra,
      theBed.images.musl,
    ]);
    ok(started.code === 0, started.stderr);
    return started.stdout.trim();
  };
  const withVolume = await start(["-v", "/scratch"]);
  try {
    const fields = await deployAndCheck(engine, withVolume, {});
    checkPrivateDir(fields, "/scratch", 0);
  } finally {
    await dockerCli(theBed, ["rm", "-f", "-v", withVolume]);
  }
  const without = await start(["--tmpfs", "/tmp"]);
  const bundle = await makeBundle();
  try {
    const container = await engine.inspectContainer(without);
    const error = await assertRejects(
      deploySatellite(engine, container, bundle, { root: "/" }),
      DockerError,
    );
    ok(error.message.includes("read-only"), error.message);
  } finally {
    await dockerCli(theBed, ["rm", "-f", without]);
    await Deno.remove(bundle, { recursive: true });
  }
  // An exec tmpfs: Docker's archive API cannot write into it, the host can.
  const withTmpfs = await start(["--tmpfs", "/x:exec"]);
  const again = await makeBundle();
  try {
    const fields = await deployAndCheck(engine, withTmpfs, {});
    checkPrivateDir(fields, "/x", 0);
    const container = await engine.inspectContainer(withTmpfs);
    const error = await assertRejects(
      deploySatellite(engine, container, again, { root: "/", placeOnHost: false }),
      DockerError,
    );
    ok(/Docker cannot upload into tmpfs/.test(error.message), error.message);
  } finally {
    await dockerCli(theBed, ["rm", "-f", withTmpfs]);
    await Deno.remove(again, { recursive: true });
  }
});

Deno.test("deploy: wrong architecture, unknown user and missing bundle are clear errors", async () => {
  const engine = await engineFor(await bed());
  const bundle = await makeBundle("x86_64");
  try {
    const arm = {
      id: "0",
      name: "armbox",
      running: true,
      arch: "aarch64",
      platform: "linux/arm64",
    };
    const wrongArch = await assertRejects(
      deploySatellite(engine, arm, bundle, { root: "/" }),
      DockerError,
    );
    ok(wrongArch.code === "unsupported" && wrongArch.message.includes("aarch64"));
    await withContainer("musl", async (id) => {
      const container = await engine.inspectContainer(id);
      const noUser = await assertRejects(
        deploySatellite(engine, container, bundle, { root: "/", user: "nosuchuser" }),
        DockerError,
      );
      ok(noUser.code === "user" && noUser.message.includes("nosuchuser"), noUser.message);
    });
    const missing = await assertRejects(
      deploySatellite(
        engine,
        { ...arm, arch: "x86_64" },
        `${bundle}/nonexistent`,
        { root: "/" },
      ),
      DockerError,
    );
    ok(missing.code === "bundle" && missing.message.includes("build-satellite"));
  } finally {
    await Deno.remove(bundle, { recursive: true });
  }
});
