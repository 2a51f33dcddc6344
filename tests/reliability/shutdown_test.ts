// SIGTERM to `dockerfuse mount` while a file is still open and the write-behind queue is full:
// every write the kernel was told is done reaches the container, even though the mount is
// aborted (the file stays open) and the satellite answers only later.

import { ok, strictEqual } from "node:assert/strict";
import { docker, exitWithin, sleep, startMount } from "./helpers.ts";

/** The byte at `offset` of the written file (not periodic within a chunk). */
function patternByte(offset: number): number {
  return (offset * 7 + Math.floor(offset / 4093)) & 0xff;
}

function pattern(offset: number, length: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = patternByte(offset + i);
  return out;
}

/** Writes the pattern to `path` in 256 KiB chunks until a write fails; prints bytes written. */
const WRITER = `
const path = Deno.args.at(-1);
const chunk = 256 * 1024;
const file = Deno.openSync(path, { write: true, create: true, truncate: true });
let done = 0;
const out = (line) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\\n"));
for (;;) {
  const data = new Uint8Array(chunk);
  for (let i = 0; i < chunk; i++) {
    const offset = done + i;
    data[i] = (offset * 7 + Math.floor(offset / 4093)) & 0xff;
  }
  try {
    let at = 0;
    while (at < chunk) at += file.writeSync(data.subarray(at));
  } catch (error) {
    out("error " + error.message);
    break;
  }
  done += chunk;
  out("acked " + done);
}
try { file.close(); } catch (error) { out("close " + error.message); }
`;

Deno.test({
  name: "SIGTERM with a file open and the write-behind queue full loses no acknowledged write",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const m = await startMount("glibc");
    let paused = false;
    try {
      const writer = new Deno.Command(Deno.execPath(), {
        args: ["eval", WRITER, "--", `${m.mountpoint}/tmp/wb`],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let acked = 0;
      let writerError = "";
      const lines = (async () => {
        const decoder = new TextDecoder();
        let buffered = "";
        for await (const chunk of writer.stdout) {
          buffered += decoder.decode(chunk, { stream: true });
          let nl;
          while ((nl = buffered.indexOf("\n")) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (line.startsWith("acked ")) acked = Number(line.slice(6));
            else writerError += line + "\n";
          }
        }
      })();
      while (acked < 4 << 20) await sleep(20);
      // The satellite stops answering: the writes the kernel already has back pile up in the
      // write-behind queue until the writer blocks.
      await docker(["pause", m.container]);
      paused = true;
      let last = -1;
      while (acked !== last) {
        last = acked;
        await sleep(500);
      }
      const atSigterm = acked;
      m.child.kill("SIGTERM");
      // Past the client's detach grace (2 s): the mount is aborted with the file still open.
      await sleep(4000);
      await docker(["unpause", m.container]);
      paused = false;
      const code = await exitWithin(m, 60_000);
      await writer.status;
      await lines;
      ok(acked >= atSigterm);
      console.log(
        `acknowledged ${acked >> 20} MiB (${atSigterm} bytes at SIGTERM); client exit ${code}; ` +
          `writer: ${writerError.trim()}`,
      );
      const size = Number(
        (await docker(["exec", m.container, "stat", "-c", "%s", "/tmp/wb"])).stdout.trim(),
      );
      ok(size >= acked, `${acked} bytes acknowledged, ${size} in the container`);
      const inside = (await docker([
        "exec",
        m.container,
        "sh",
        "-c",
        `head -c ${acked} /tmp/wb | sha256sum`,
      ])).stdout.split(" ")[0];
      const digest = await crypto.subtle.digest("SHA-256", pattern(0, acked));
      const expected = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0"))
        .join("");
      strictEqual(inside, expected, "the acknowledged bytes differ in the container");
    } finally {
      if (paused) await docker(["unpause", m.container], false);
      await m.cleanup();
    }
  },
});
