// The packaged satellite inside each test image (glibc, musl, static, arm64 under qemu):
// uploaded and started through the archive API and exec, it answers the handshake and a read,
// and afterwards `docker diff` shows nothing of it. Needs Docker: fails (not skips) without.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { connectEngine, deploySatellite, readManifest } from "../../src/docker/mod.ts";
import { RpcClient } from "../../src/protocol/mod.ts";
import { openChannel } from "../../src/mount/direct.ts";
import {
  ensureTestBed,
  type ImageKind,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";
import { smallDataEntries } from "../../tasks/testbed/data.ts";
import { buildSatellite } from "../../tasks/satellite/build.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function dockerDiff(bed: TestBed, id: string): Promise<string[]> {
  const out = await new Deno.Command("docker", {
    args: ["diff", id],
    env: { DOCKER_HOST: bed.dockerHost },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`docker diff failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.length > 0).sort();
}

const KINDS: ImageKind[] = ["glibc", "musl", "static", "arm64"];
let prepared: Promise<TestBed> | undefined;
function prepare(): Promise<TestBed> {
  prepared ??= (async () => {
    await buildSatellite({ log: () => {} });
    return await ensureTestBed();
  })();
  return prepared;
}

for (const kind of KINDS) {
  Deno.test(`packaged satellite runs in the ${kind} image and leaves nothing behind`, async () => {
    const bed = await prepare();
    const engine = await connectEngine({ env: { DOCKER_HOST: bed.dockerHost } });
    const name = `dfh-sat-${kind}-${crypto.randomUUID().slice(0, 8)}`;
    const id = await startTestContainer(bed, kind, { name });
    try {
      const info = await engine.inspectContainer(id);
      const bundleDir = `${ROOT}dist/satellite/${info.arch}`;
      const manifest = await readManifest(bundleDir);
      const before = await dockerDiff(bed, id);
      const started = performance.now();
      const session = await deploySatellite(engine, info, bundleDir, { root: "/" });
      const deployMs = Math.round(performance.now() - started);
      const stderr = new Response(session.stderr).text();
      const client = new RpcClient(session.stdout, session.stdin, {
        expectedBuildId: manifest.buildId,
        timeoutMs: 120_000,
      });
      const handshake = await client.ready.catch(async (e) => {
        throw new Error(`${e.message}; satellite stderr: ${await stderr}`);
      });
      const startMs = Math.round(performance.now() - started);
      equal(handshake.arch, info.arch);
      equal(handshake.uid, 0);
      const expected = smallDataEntries(kind);
      const want = (path: string) => {
        const e = expected.find((x) => x.path === path);
        if (e?.type !== "file") throw new Error(`no ${path} in the test data`);
        return e.content;
      };
      const firstAt = performance.now();
      const first = await client.call.lstat({ path: "data" }); // what a mount's first ls needs
      const firstDir = await client.call.opendir({ path: "data" });
      ok(first.ok && firstDir.ok);
      const firstList = await client.call.readdir({
        handle: firstDir.value.handle,
        offset: 0n,
        plus: true,
      });
      ok(firstList.ok);
      const firstMs = Math.round(performance.now() - firstAt);
      const file = await client.call.open({ path: "data/hello.txt", flags: 0 });
      ok(file.ok, !file.ok ? file.message : "");
      const data = await client.call.read({ handle: file.value.handle, offset: 0n, size: 4096 });
      ok(data.ok);
      deepStrictEqual(data.value, want("hello.txt"));
      const bin = await client.call.open({ path: "data/binary.bin", flags: 0 });
      ok(bin.ok);
      const chunk = await client.call.read({ handle: bin.value.handle, offset: 0n, size: 1 << 20 });
      ok(chunk.ok);
      deepStrictEqual(chunk.value, want("binary.bin"));
      const link = await client.call.readlink({ path: "data/hello-link" });
      ok(link.ok);
      equal(link.value, "hello.txt");
      // the calls whose syscall numbers or structs depend on the arch, without changing anything
      const st = await client.call.lstat({ path: "data/dir/nested.txt" }); // openat2 + statx
      ok(st.ok, !st.ok ? st.message : "");
      deepStrictEqual([st.value.size, st.value.mode], [
        BigInt(want("dir/nested.txt").length),
        0o100640,
      ]);
      const dir = await client.call.opendir({ path: "data" });
      ok(dir.ok);
      const list = await client.call.readdir({ handle: dir.value.handle, offset: 0n, plus: true });
      ok(list.ok);
      const hello = list.value.entries.find((e) => e.name === "hello.txt");
      equal(hello?.stat?.size, BigInt(want("hello.txt").length));
      equal(list.value.entries.find((e) => e.name === "hello-link")?.type, 10); // DT_LNK
      const fs = await client.call.statfs({ path: "data" });
      ok(fs.ok && fs.value.bsize > 0);
      const rn = await client.call.rename({ from: "data/missing", to: "data/x", flags: 1 });
      equal(!rn.ok && rn.code, "ENOENT"); // renameat2
      const mk = await client.call.mknod({
        path: "data/hello.txt",
        mode: 0o10644,
        rdevMajor: 0,
        rdevMinor: 0,
      });
      equal(!mk.ok && mk.code, "EEXIST"); // mknodat
      await client.close();
      const { code } = await session.exited;
      equal(code, 0, `satellite exit code; stderr: ${await stderr}`);
      deepStrictEqual(await dockerDiff(bed, id), before);
      console.log(
        `${kind} (${info.arch}): ${startMs} ms from deploy to handshake ` +
          `(upload + exec ${deployMs} ms), first lstat+opendir+readdir ${firstMs} ms, ` +
          `bundle ${(await bundleBytes(bundleDir, manifest.files)) / 1e6} MB`,
      );
    } finally {
      engine.close();
      await removeTestContainer(bed, id);
    }
  });
}

// A client slow to take the direct channel (a busy host: CI, a build running) found the socket
// gone: the satellite's idle warm-up, listing /proc meanwhile, moved its working directory there
// (the xattr probe by name, Docker's seccomp refusing listxattrat) and back to the root, away
// from the directory holding the socket (/proc/<pid>/cwd/…): the mount fell back to the exec
// stream (every call through dockerd). The client here waits until the warm-up has had its time.
Deno.test("the direct socket stays reachable for a client that connects late", async () => {
  const bed = await prepare();
  const engine = await connectEngine({ env: { DOCKER_HOST: bed.dockerHost } });
  const id = await startTestContainer(bed, "glibc", {
    name: `dfh-sat-late-${crypto.randomUUID().slice(0, 8)}`,
  });
  try {
    const info = await engine.inspectContainer(id);
    const bundleDir = `${ROOT}dist/satellite/${info.arch}`;
    const manifest = await readManifest(bundleDir);
    const session = await deploySatellite(engine, info, bundleDir, { root: "/", direct: true });
    ok(session.directToken !== undefined && session.pid !== undefined, "a direct offer is made");
    const stderr = new Response(session.stderr).text();
    // Time for the warm-up (WARM_UP_LISTINGS listings of /proc, one per idle turn) to run: on the
    // code before the fix, this wait made the socket unreachable.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const channel = await openChannel(session);
    equal(channel.note, undefined, "no reason to stay on the exec stream");
    ok(channel.kind === "direct");
    const client = new RpcClient(channel.conn, { expectedBuildId: manifest.buildId });
    equal((await client.ready).arch, info.arch);
    const st = await client.call.lstat({ path: "data/hello.txt" });
    ok(st.ok, !st.ok ? st.message : "");
    await client.close();
    channel.close();
    const { code } = await session.exited;
    equal(code, 0, `satellite exit code; stderr: ${await stderr}`);
  } finally {
    engine.close();
    await removeTestContainer(bed, id);
  }
});

async function bundleBytes(dir: string, files: { path: string }[]): Promise<number> {
  let n = 0;
  for (const f of files) n += (await Deno.stat(`${dir}/${f.path}`)).size;
  return n;
}
