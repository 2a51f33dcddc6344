// The volume plugin keeps what it serves to root: a private state directory (modes of existing
// directories fixed at start), a socket only its owner can connect to, created that way (never
// reachable with the umask's mode, not even for a moment).

import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type { Logger } from "../fuse/mod.ts";
import type { MountEnding } from "../mount/mod.ts";
import { runVolumePlugin } from "./mod.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** A plugin on temporary paths with a fake mount; `fn` runs while it serves. */
async function withPlugin(
  prepare: (stateDir: string, socketDir: string) => void,
  fn: (paths: { stateDir: string; socket: string }) => Promise<void>,
): Promise<void> {
  const base = await Deno.makeTempDir({ prefix: "dockerfuse-plugin-sec-" });
  const stateDir = `${base}/state`;
  const socketDir = `${base}/plugins`;
  const socket = `${socketDir}/sec.sock`;
  const oldUmask = Deno.umask(0); // the most permissive umask: modes must not depend on it
  const stop = new AbortController();
  let served: Promise<boolean> | undefined;
  Deno.chmodSync(base, 0o755); // only the plugin's own modes may keep other users out
  try {
    prepare(stateDir, socketDir);
    let serving!: () => void;
    const ready = new Promise<void>((resolve) => serving = resolve);
    served = runVolumePlugin(
      { socket, stateDir, debug: false, logFormat: "text" },
      {
        env: {},
        logger: { ...quiet, info: (m) => m.includes(" serving on ") && serving() },
        bundleRoot: base,
        stop: stop.signal,
        mount: () =>
          Promise.resolve({
            readyMs: 1,
            ended: new Promise<MountEnding>(() => {}),
            close: () => Promise.resolve(),
          }),
      },
    );
    const started = await Promise.race([ready.then(() => true), served]);
    ok(started === true, "the plugin did not start");
    await fn({ stateDir, socket });
  } finally {
    Deno.umask(oldUmask);
    stop.abort();
    if (served) strictEqual(await served, true);
    await Deno.remove(base, { recursive: true });
  }
}

function mode(path: string): number {
  return Deno.lstatSync(path).mode! & 0o7777;
}

/** POSTs one plugin request over the unix socket with a raw HTTP/1.1 exchange. */
async function post(socket: string, endpoint: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    const request = `POST ${endpoint} HTTP/1.1\r\nHost: plugin\r\nContent-Length: 0\r\n` +
      "Connection: close\r\n\r\n";
    await conn.write(new TextEncoder().encode(request));
    return await new Response(conn.readable).text();
  } catch (error) {
    conn.close();
    throw error;
  }
}

Deno.test("a new state directory and socket are private to root", async () => {
  await withPlugin(() => {}, async ({ stateDir, socket }) => {
    strictEqual(mode(stateDir).toString(8), "700");
    strictEqual(mode(`${stateDir}/volumes`).toString(8), "700");
    const st = Deno.lstatSync(socket);
    ok(st.isSocket, "not a socket");
    strictEqual(mode(socket).toString(8), "600");
    strictEqual(st.uid, Deno.uid());
    // nothing else was left in the socket's directory
    deepStrictEqual(
      [...Deno.readDirSync(socket.slice(0, socket.lastIndexOf("/")))].map((e) => e.name),
      [
        "sec.sock",
      ],
    );
    const answer = await post(socket, "/Plugin.Activate");
    ok(answer.includes('"Implements":["VolumeDriver"]'), answer);
  });
});

Deno.test("modes of an existing state directory are fixed at start", async () => {
  await withPlugin((stateDir) => {
    Deno.mkdirSync(`${stateDir}/volumes/old`, { recursive: true });
    Deno.chmodSync(stateDir, 0o755);
    Deno.chmodSync(`${stateDir}/volumes`, 0o777);
  }, ({ stateDir }) => {
    strictEqual(mode(stateDir).toString(8), "700");
    strictEqual(mode(`${stateDir}/volumes`).toString(8), "700");
    return Promise.resolve();
  });
});

/** Runs `args` as user nobody (through setpriv; needs root). */
async function asNobody(args: string[]): Promise<{ code: number; stderr: string }> {
  strictEqual(Deno.uid(), 0, "this test switches to user nobody: it must run as root");
  const out = await new Deno.Command("setpriv", {
    args: ["--reuid=65534", "--regid=65534", "--clear-groups", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test("another local user can neither talk to the plugin nor reach its mountpoints", async () => {
  await withPlugin((_, socketDir) => {
    Deno.mkdirSync(socketDir, { mode: 0o755 });
    Deno.chmodSync(socketDir, 0o755);
  }, async ({ stateDir, socket }) => {
    const curl = await asNobody([
      "curl",
      "-sS",
      "--unix-socket",
      socket,
      "-X",
      "POST",
      "http://plugin/Plugin.Activate",
    ]);
    strictEqual(curl.code, 7, `curl as nobody must fail to connect: ${curl.stderr}`); // couldn't connect
    ok(/Permission denied|Couldn't connect|Failed to connect/i.test(curl.stderr), curl.stderr);
    Deno.mkdirSync(`${stateDir}/volumes/v1`, { mode: 0o755 }); // as the driver makes them
    const ls = await asNobody(["ls", `${stateDir}/volumes/v1`]);
    ok(ls.code !== 0 && /Permission denied/.test(ls.stderr), `ls as nobody: ${ls.stderr}`);
    // root still can
    ok((await post(socket, "/Plugin.Activate")).includes("VolumeDriver"));
  });
});
