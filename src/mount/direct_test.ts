// The direct channel's choice (direct.ts): the satellite's socket when its hello offers one this
// host reaches, else the exec stream with the hello left in it. The "satellite" here is this
// very process: its working directory holds the socket, reached through /proc/<pid>/cwd.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { concatBytes, type ExecSession } from "../docker/mod.ts";
import { FAKE_HELLO } from "../protocol/_test_utils.ts";
import {
  DIRECT_SOCKET_NAME,
  Dispatcher,
  firstFrameLength,
  type Hello,
  RpcClient,
} from "../protocol/mod.ts";
import { openChannel } from "./direct.ts";

const SECRET = "0123456789abcdef0123456789abcdef";

function helloFrame(hello: Hello): Uint8Array {
  return new Uint8Array(new Dispatcher({} as never).helloFrame(hello)); // not a Buffer
}

/** An exec session whose stdout gives `chunks`, then stays open; stdin is collected. */
function fakeExec(
  chunks: Uint8Array[],
  extra: { pid?: number; directToken?: string },
): { exec: ExecSession; written: () => Uint8Array[] } {
  const written: Uint8Array[] = [];
  const stdout = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(c);
    },
  });
  const exec: ExecSession = {
    stdin: new WritableStream({ write: (c) => void written.push(c) }),
    stdout,
    stderr: new ReadableStream(),
    exited: new Promise(() => {}),
    kill() {},
    ...extra,
  };
  return { exec, written: () => written };
}

async function readFrame(readable: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const reader = readable.getReader();
  let bytes: Uint8Array = new Uint8Array(0);
  while (firstFrameLength(bytes) === undefined) {
    const { value, done } = await reader.read();
    if (done) break;
    bytes = concatBytes([bytes, value]);
  }
  reader.releaseLock();
  return bytes;
}

Deno.test("direct channel: taken when offered, the secret sent first, the hello read there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-direct-" });
  const cwd = Deno.cwd();
  Deno.chdir(dir);
  const listener = Deno.listen({ transport: "unix", path: DIRECT_SOCKET_NAME });
  Deno.chdir(cwd);
  try {
    const served = (async () => {
      const conn = await listener.accept();
      const secret = new Uint8Array(SECRET.length);
      let have = 0;
      while (have < secret.length) have += (await conn.read(secret.subarray(have)))!;
      await conn.write(helloFrame({ ...FAKE_HELLO, buildId: "on the socket" }));
      return { conn, secret: new TextDecoder().decode(secret) };
    })();
    // The dir is this process's working directory only while it is asked for.
    Deno.chdir(dir);
    const { exec } = fakeExec([helloFrame({ ...FAKE_HELLO, direct: true })], {
      pid: Deno.pid,
      directToken: SECRET,
    });
    const channel = await openChannel(exec).finally(() => Deno.chdir(cwd));
    const { conn, secret } = await served;
    ok(channel.kind === "direct");
    equal(secret, SECRET);
    // The RPC client reads the socket itself, not through a web stream.
    const client = new RpcClient(channel.conn);
    equal((await client.ready).buildId, "on the socket");
    conn.close(); // the satellite goes: the client reads the end of its socket
    equal((await client.closed).reason, "satellite closed its output");
    channel.close();
  } finally {
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("direct channel: the exec stream, hello included, when none is offered or reachable", async () => {
  const hello = helloFrame(FAKE_HELLO);
  const offered = helloFrame({ ...FAKE_HELLO, direct: true });
  // Not asked for: the exec stream as it is, nothing read from it.
  const plain = fakeExec([hello], {});
  const untouched = await openChannel(plain.exec);
  ok(untouched.kind === "exec");
  equal(untouched.readable, plain.exec.stdout);
  // Asked for, but the hello (split in two chunks) does not offer it.
  const split = fakeExec([hello.subarray(0, 3), hello.subarray(3)], {
    pid: 1,
    directToken: SECRET,
  });
  const notOffered = await openChannel(split.exec);
  ok(notOffered.kind === "exec");
  equal(notOffered.note, undefined);
  deepStrictEqual(await readFrame(notOffered.readable), hello);
  // Offered, but there is no socket where it should be (a pid without it): the note says why,
  // and nothing was written to the satellite.
  const unreachable = fakeExec([offered], { pid: Deno.pid, directToken: SECRET });
  const fallback = await openChannel(unreachable.exec);
  ok(fallback.kind === "exec");
  ok(fallback.note?.startsWith("cannot connect"), String(fallback.note));
  deepStrictEqual(await readFrame(fallback.readable), offered);
  deepStrictEqual(unreachable.written(), []);
  // Offered, with no pid known.
  const noPid = await openChannel(fakeExec([offered], { directToken: SECRET }).exec);
  equal(noPid.note, "the satellite's process id is not known");
});
