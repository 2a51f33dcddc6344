// Reconnecting (the default) against the real engine: the same client process keeps the same
// mount through a satellite kill, a container restart, kill + start, a dockerd restart and (with
// --follow) a recreated container; a reader loop sees only EIO meanwhile (never "Transport
// endpoint is not connected"); open files never read another file's data; acknowledged writes
// are in the container or reported to the writer.

import { deepStrictEqual, equal, notEqual, ok } from "node:assert/strict";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { startTlsDockerd } from "../docker/tls_engine.ts";
import {
  alive,
  assertNoStaleMount,
  docker,
  type E2EMount,
  exitWithin,
  isMounted,
  prng,
  readInside,
  sleep,
  startMount,
  withMount,
} from "./helpers.ts";
import { restartDockerd, stopProcess, tcpForwarder } from "./engine_faults.ts";

/** Bound for a reconnection to come (generous: the machine is shared and slow). */
const BACK_MS = 90_000;

/** The pid of the satellite attached last ("Satellite ready … pid N" lines). */
function lastSatellitePid(m: E2EMount): number {
  const all = [...m.stderr().matchAll(/Satellite ready .*pid (\d+)/g)];
  if (all.length === 0) throw new Error(`no "Satellite ready" line in:\n${m.stderr()}`);
  return Number(all.at(-1)![1]);
}

/** A reader loop through the mount, counting successes and failures by message. */
function readerLoop(m: E2EMount, file: string): { stop(): Promise<ReaderCounts> } {
  const stopFile = `${m.mountpoint}.stop-${crypto.randomUUID()}`;
  const script = `ok=0; bad=0; : >"$ERRS"
    while [ ! -e "$STOP" ]; do
      if cat "$M/${file}" >/dev/null 2>>"$ERRS"; then ok=$((ok+1)); else bad=$((bad+1)); fi
    done
    echo "$ok $bad"`;
  const errs = `${stopFile}.errs`;
  const child = new Deno.Command("sh", {
    args: ["-c", script],
    env: { M: m.mountpoint, STOP: stopFile, ERRS: errs },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  return {
    async stop(): Promise<ReaderCounts> {
      await Deno.writeTextFile(stopFile, "");
      const out = await child.output();
      const [good, bad] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
      const messages = await Deno.readTextFile(errs).catch(() => "");
      await Deno.remove(stopFile).catch(() => {});
      await Deno.remove(errs).catch(() => {});
      return { good: good!, bad: bad!, messages };
    },
  };
}

interface ReaderCounts {
  good: number;
  bad: number;
  /** What cat printed on failure. */
  messages: string;
}

/** Reads `path` until it answers `want`; returns ms until then. Fails after BACK_MS. */
async function readBack(m: E2EMount, path: string, want: string): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const got = await Deno.readTextFile(`${m.mountpoint}/${path}`).catch((e) => e as Error);
    if (got === want) return Math.round(performance.now() - t0);
    if (performance.now() - t0 > BACK_MS) {
      throw new Error(`'${path}' did not read back (${got}):\n${m.stderr()}`);
    }
    await sleep(50);
  }
}

/**
 * The mount survives `fault` (run while a reader loop reads through it): same client, still
 * mounted, the reader saw only EIO, a file written afterwards is in the container.
 */
async function survives(
  m: E2EMount,
  name: string,
  fault: () => Promise<void>,
  container = m.container,
  /** The file the loop reads and its contents (in the container before and after). */
  loop = { path: "data/hello.txt", content: "hello from musl\n" },
  /** The engine of the container (default: the shared one). */
  dockerHost?: string,
): Promise<void> {
  const reader = readerLoop(m, loop.path);
  await sleep(300);
  const reconnects = m.stderr().split("Reconnected to").length;
  await fault();
  const faultDone = performance.now();
  // Wait for the reconnection itself, so the read below is not from the kernel's cache.
  while (m.stderr().split("Reconnected to").length === reconnects) {
    ok(performance.now() - faultDone < BACK_MS, `no reconnection after ${name}:\n${m.stderr()}`);
    ok(await alive(m.child.pid), `the client exited after ${name}:\n${m.stderr()}`);
    await sleep(50);
  }
  const firstReadMs = Math.round(performance.now() - faultDone) +
    await readBack(m, loop.path, loop.content);
  await sleep(300);
  const counts = await reader.stop();
  ok(await alive(m.child.pid), `the client exited:\n${m.stderr()}`);
  ok(await isMounted(m.mountpoint), "the mount is gone");
  ok(counts.good > 0, `the reader never succeeded: ${JSON.stringify(counts)}`);
  ok(!/not connected/i.test(counts.messages), `"not connected" seen:\n${counts.messages}`);
  for (const line of counts.messages.split("\n").filter((l) => l)) {
    ok(/Input\/output error/.test(line), `unexpected reader error: ${line}`);
  }
  const after = `after ${name} ${crypto.randomUUID()}\n`;
  await Deno.writeTextFile(`${m.mountpoint}/data/after.txt`, after);
  if (dockerHost === undefined) {
    deepStrictEqual(await readInside(container, "/data/after.txt"), after);
  } else {
    const inside = await docker(["-H", dockerHost, "exec", container, "cat", "/data/after.txt"]);
    deepStrictEqual(inside.stdout, after);
  }
  const outage = /Reconnected to '[^']*' after (\d+) ms/g;
  const outages = [...m.stderr().matchAll(outage)].map((x) => Number(x[1]));
  console.log(
    `  ${name}: first good read ${firstReadMs} ms after the fault command returned; ` +
      `outage logged ${outages.at(-1)} ms; reader ${counts.good} ok, ${counts.bad} EIO`,
  );
}

Deno.test("reconnect: satellite killed → the same mount carries on; open files are reopened", async () => {
  await withMount("musl", async (m) => {
    await Deno.writeTextFile(`${m.mountpoint}/data/open.txt`, "opened before\n");
    const file = await Deno.open(`${m.mountpoint}/data/open.txt`, { read: true });
    try {
      const pid = lastSatellitePid(m);
      await survives(m, "satellite kill", async () => {
        await docker(["exec", m.container, "kill", "-9", String(pid)]);
      });
      notEqual(lastSatellitePid(m), pid, "no new satellite");
      // Same inode at the same path: the open file is reopened and reads its own data.
      const buf = new Uint8Array(64);
      await file.seek(0, Deno.SeekMode.Start);
      const n = await file.read(buf);
      deepStrictEqual(new TextDecoder().decode(buf.subarray(0, n ?? 0)), "opened before\n");
    } finally {
      file.close();
    }
  }, { args: ["--attr-timeout", "0", "--entry-timeout", "0"] });
});

Deno.test("reconnect: an open file whose path names another file afterwards never reads it", async () => {
  await withMount("musl", async (m) => {
    await Deno.writeTextFile(`${m.mountpoint}/data/mine.txt`, "mine\n");
    await Deno.writeTextFile(`${m.mountpoint}/data/other.txt`, "OTHER FILE\n");
    const file = await Deno.open(`${m.mountpoint}/data/mine.txt`, { read: true });
    try {
      const pid = lastSatellitePid(m);
      // The satellite dies and, before it is back, another file takes the path.
      await docker([
        "exec",
        m.container,
        "sh",
        "-c",
        `kill -9 ${pid}; mv /data/other.txt /data/mine.txt`,
      ]);
      await readBack(m, "data/mine.txt", "OTHER FILE\n");
      const buf = new Uint8Array(64);
      const got = await file.read(buf).then(
        (n) => new TextDecoder().decode(buf.subarray(0, n ?? 0)),
        (e: Error) => e,
      );
      ok(got instanceof Error, `the old handle read: ${JSON.stringify(got)}`);
      ok(/stale|Input\/output/i.test(got.message), got.message);
      console.log(`  old handle after its path changed: ${got.message}`);
      // The log line and the error reach us on different pipes: give the line a moment.
      for (let i = 0; i < 50 && !/Cannot reopen .*ESTALE/.test(m.stderr()); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      ok(/Cannot reopen .*ESTALE/.test(m.stderr()), m.stderr());
    } finally {
      file.close();
    }
  }, { args: ["--attr-timeout", "0", "--entry-timeout", "0"] });
});

Deno.test("reconnect: docker restart → the same mount carries on; an open file reads its own data or fails", async () => {
  await withMount("musl", async (m) => {
    await Deno.writeTextFile(`${m.mountpoint}/data/open.txt`, "opened before\n");
    const file = await Deno.open(`${m.mountpoint}/data/open.txt`, { read: true });
    try {
      await survives(m, "docker restart", async () => {
        await docker(["restart", "-t", "1", m.container]);
      });
      const buf = new Uint8Array(64);
      const got = await file.read(buf).then(
        (n) => new TextDecoder().decode(buf.subarray(0, n ?? 0)),
        (e: Error) => e,
      );
      if (got instanceof Error) ok(/stale|Input\/output/i.test(got.message), got.message);
      else deepStrictEqual(got, "opened before\n");
      console.log(
        `  open file after the restart: ${got instanceof Error ? got.message : "reopened"}`,
      );
    } finally {
      file.close();
    }
  }, { args: ["--attr-timeout", "0", "--entry-timeout", "0"] });
});

Deno.test("reconnect: docker kill + docker start → the same mount carries on", async () => {
  await withMount("musl", async (m) => {
    await survives(m, "docker kill + start", async () => {
      await docker(["kill", m.container]);
      await sleep(1000); // stopped for a while: requests wait, then EIO
      await docker(["start", m.container]);
    });
  });
});

Deno.test("reconnect: --follow → a container recreated under the same name is mounted", async () => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const name = `dockerfuse-follow-${crypto.randomUUID().slice(0, 8)}`;
  await startTestContainer(bed, "musl", { name });
  try {
    await withMount("musl", async (m) => {
      await Deno.writeTextFile(`${m.mountpoint}/data/old.txt`, "old container\n");
      await survives(m, "docker rm -f + docker run", async () => {
        await removeTestContainer(bed, name);
        await startTestContainer(bed, "musl", { name });
      }, name);
      // The new container has no old.txt: it is the one mounted.
      const old = await Deno.readTextFile(`${m.mountpoint}/data/old.txt`).catch((e) => e);
      ok(old instanceof Deno.errors.NotFound, `old.txt still shows: ${old}`);
      ok(/Following '.*' to its new container/.test(m.stderr()), m.stderr());
    }, { container: name, args: ["--follow", "--attr-timeout", "0", "--entry-timeout", "0"] });
  } finally {
    await removeTestContainer(bed, name);
  }
});

Deno.test("reconnect: after a reconnect the kernel is told of names that hold another file now", async () => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const name = `dockerfuse-reval-${crypto.randomUUID().slice(0, 8)}`;
  await startTestContainer(bed, "musl", { name });
  try {
    await docker(["exec", name, "sh", "-c", "echo old > /data/old.txt"]);
    await withMount("musl", async (m) => {
      // Cached by the kernel for a minute: only a notification makes it forget them.
      deepStrictEqual(await Deno.readTextFile(`${m.mountpoint}/data/old.txt`), "old\n");
      const revalidations = (): number => m.stderr().split("Revalidated nodes").length;
      const before = revalidations();
      await removeTestContainer(bed, name);
      await startTestContainer(bed, "musl", { name });
      const t0 = performance.now();
      while (revalidations() === before) {
        ok(performance.now() - t0 < BACK_MS, `no revalidation:\n${m.stderr()}`);
        await sleep(50);
      }
      const line = m.stderr().split("\n").findLast((l) => l.includes("Revalidated nodes"));
      const seen = m.stderr().length;
      const gone = await Deno.stat(`${m.mountpoint}/data/old.txt`).catch((e) => e);
      ok(gone instanceof Deno.errors.NotFound, `old.txt still shows: ${JSON.stringify(gone)}`);
      // The kernel had dropped its entry: it looked the name up again.
      ok(/ rx \d+ LOOKUP /.test(m.stderr().slice(seen)), m.stderr().slice(seen));
      console.log(`  ${line?.replace(/^\S+ \S+\s+/, "")}`);
    }, {
      container: name,
      args: ["--follow", "--debug", "--attr-timeout", "60", "--entry-timeout", "60"],
    });
  } finally {
    await removeTestContainer(bed, name);
  }
});

Deno.test("reconnect: container removed without --follow → exit 8 naming it, nothing left", async () => {
  const bed = await ensureTestBed({ kinds: ["musl"] });
  const name = `dockerfuse-gone-${crypto.randomUUID().slice(0, 8)}`;
  await startTestContainer(bed, "musl", { name });
  try {
    await withMount("musl", async (m) => {
      const t0 = performance.now();
      await removeTestContainer(bed, name);
      const code = await exitWithin(m, BACK_MS);
      deepStrictEqual(code, 8, m.stderr());
      const last = m.stderr().trim().split("\n").pop() ?? "";
      ok(/container '.*' was removed/.test(last), m.stderr());
      await assertNoStaleMount(m.mountpoint);
      console.log(`  removal ended the mount in ${Math.round(performance.now() - t0)} ms`);
    }, { container: name });
  } finally {
    await removeTestContainer(bed, name);
  }
});

Deno.test("reconnect: write-behind interrupted by a satellite kill loses no acknowledged byte silently", async () => {
  await withMount("musl", async (m) => {
    const random = prng(17);
    const chunk = 64 * 1024;
    const path = `${m.mountpoint}/data/stream.bin`;
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    const acked: { offset: number; bytes: Uint8Array }[] = [];
    const everAcked: { offset: number; bytes: Uint8Array }[] = [];
    let errors = 0;
    let offset = 0;
    // The satellite's host pid: killed from here, at a seeded point, with writes in flight.
    const top = await docker(["top", m.container, "-eo", "pid,args"]);
    const line = top.stdout.split("\n").find((l) => /satellite/.test(l));
    ok(line, top.stdout);
    const hostPid = Number(line.trim().split(/\s+/)[0]);
    let killed = false;
    const killAt = 48 + Math.floor(random() * 64);
    for (let i = 0; i < 400; i++) {
      if (i === killAt) {
        killed = true;
        Deno.kill(hostPid, "SIGKILL");
      }
      const bytes = new Uint8Array(chunk);
      for (let j = 0; j < chunk; j += 4096) bytes[j] = Math.floor(random() * 256);
      bytes.fill((i % 250) + 1, 1, 16);
      try {
        // Sync calls: Deno's async ones write through a dup'd descriptor whose close (a
        // FLUSH) would take the error report away from this writer. (They block this event
        // loop: the client must not log much meanwhile, or its stderr pipe fills: no --debug.)
        file.seekSync(offset, Deno.SeekMode.Start);
        const n = file.writeSync(bytes);
        equal(n, chunk);
        acked.push({ offset, bytes });
        everAcked.push({ offset, bytes });
      } catch (error) {
        // Reported: the bytes acknowledged since the last report may be lost (NFS-like).
        errors++;
        ok(/Input\/output|stale/i.test((error as Error).message), (error as Error).message);
        acked.length = 0; // everything before is reported as possibly lost
      }
      offset += chunk;
    }
    // close(2)'s error is not seen through Deno: fdatasync reports what is left to report.
    let closeError: Error | undefined;
    try {
      file.syncDataSync();
    } catch (error) {
      closeError = error as Error;
    }
    file.close();
    ok(killed);
    // (The client's log is read by this event loop, which the sync calls held up.)
    const t0 = performance.now();
    while (!m.stderr().includes("Reconnected to")) {
      ok(performance.now() - t0 < BACK_MS, `the kill was not noticed:\n${m.stderr()}`);
      await sleep(50);
    }
    // Bytes acknowledged after the last reported error must all be in the container.
    const inside = await readInsideBytes(m.container, "/data/stream.bin");
    const missing = (list: typeof acked): number =>
      list.filter(({ offset: at, bytes }) => {
        const got = inside.subarray(at, at + bytes.length);
        return got.length !== bytes.length || !got.every((b, k) => b === bytes[k]);
      }).length;
    let silent = 0;
    if (closeError === undefined) {
      for (const { offset: at, bytes } of acked) {
        const got = inside.subarray(at, at + bytes.length);
        if (got.length !== bytes.length || !got.every((b, k) => b === bytes[k])) silent++;
      }
    }
    console.log(
      `  write errors reported: ${errors}${
        closeError ? ` + fdatasync: ${closeError.message}` : ""
      }; ` +
        `checked ${acked.length} chunks acknowledged after the last report; silent losses: ${silent}; ` +
        `acknowledged chunks missing but reported: ${missing(everAcked) - silent}`,
    );
    deepStrictEqual(silent, 0);
  });
});

/** Bytes of a file inside the container (docker cp). */
async function readInsideBytes(container: string, path: string): Promise<Uint8Array> {
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-cp-" });
  try {
    await docker(["cp", `${container}:${path}`, `${dir}/out`]);
    return await Deno.readFile(`${dir}/out`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("reconnect: remote engine connection dropped, then its dockerd restarted → the same mount carries on", async () => {
  const remote = await startTlsDockerd(await ensureTestBed({ kinds: ["musl"] }));
  // Through a forwarder that can cut every connection (the engine then takes new ones).
  const proxy = tcpForwarder(remote.port);
  const host = `tcp://127.0.0.1:${proxy.port}`;
  const env = { DOCKER_HOST: host, DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: remote.certDir };
  let restarted: Deno.ChildProcess | undefined;
  try {
    // A container that comes back with its engine.
    const image = (await docker([
      "-H",
      remote.unixHost,
      "inspect",
      "-f",
      "{{.Config.Image}}",
      remote.containerId,
    ])).stdout.trim();
    const id = (await docker([
      "-H",
      remote.unixHost,
      "run",
      "-d",
      "--restart",
      "always",
      "--network",
      "none",
      image,
    ])).stdout.trim();
    const m = await startMount("musl", { container: id, env });
    try {
      await Deno.writeTextFile(`${m.mountpoint}/data/loop.txt`, "loop\n");
      await survives(
        m,
        "remote connection drop",
        () => {
          proxy.dropAll();
          return Promise.resolve();
        },
        id,
        { path: "data/loop.txt", content: "loop\n" },
        remote.unixHost,
      );
      const reconnects = m.stderr().split("Reconnected to").length;
      const reader = readerLoop(m, "data/loop.txt");
      await sleep(300);
      restarted = await restartDockerd(remote.unixHost);
      const t0 = performance.now();
      while (m.stderr().split("Reconnected to").length === reconnects) {
        ok(performance.now() - t0 < BACK_MS * 2, `no reconnection:\n${m.stderr()}`);
        ok(await alive(m.child.pid), `the client exited:\n${m.stderr()}`);
        await sleep(100);
      }
      const ms = Math.round(performance.now() - t0) + await readBack(m, "data/loop.txt", "loop\n");
      const counts = await reader.stop();
      ok(!/not connected/i.test(counts.messages), counts.messages);
      ok(await isMounted(m.mountpoint));
      const after = `after dockerd restart ${crypto.randomUUID()}\n`;
      await Deno.writeTextFile(`${m.mountpoint}/data/after.txt`, after);
      const inside = await docker(["-H", remote.unixHost, "exec", id, "cat", "/data/after.txt"]);
      deepStrictEqual(inside.stdout, after);
      console.log(
        `  dockerd restart: first good read ${ms} ms after the restart began; ` +
          `reader ${counts.good} ok, ${counts.bad} EIO`,
      );
      deepStrictEqual(await m.stop(), 0, m.stderr());
    } finally {
      await m.cleanup();
    }
  } finally {
    proxy.close();
    if (restarted) await stopProcess(restarted);
    await remote.stop();
  }
});
