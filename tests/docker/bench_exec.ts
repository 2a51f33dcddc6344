// Exec stream throughput, for comparing transports:
//   deno run -A tests/docker/bench_exec.ts raw|dockerode read  CONTAINER FILE [ROUNDS]
//   deno run -A tests/docker/bench_exec.ts raw|dockerode write CONTAINER MIB  [ROUNDS]
//   deno run -A tests/docker/bench_exec.ts raw|dockerode latency CONTAINER
// read: `cat FILE` → stdout; write: MIB MiB into stdin of `sh -c 'cat >/dev/null'`; prints MB/s.
// latency: 2000 round trips of 100 bytes through `cat`; prints µs per round trip.
import { connectEngine } from "../../src/docker/mod.ts";

const transport = Deno.args[0] === "dockerode" ? "dockerode" : "raw";
const mode = Deno.args[1] === "write" || Deno.args[1] === "latency" ? Deno.args[1] : "read";
const container = Deno.args[2] ?? "dfh-dev1";
const what = Deno.args[3] ?? (mode === "read" ? "/data/large.bin" : "256");
const rounds = Number(Deno.args[4] ?? 3);
const engine = await connectEngine({ execTransport: transport });
const info = await engine.inspectContainer(container);
if (mode === "latency") {
  const session = await engine.exec(info.id, ["cat"]);
  const writer = session.stdin.getWriter();
  const reader = session.stdout.getReader();
  const message = new Uint8Array(100).fill(1);
  const count = 2000;
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    await writer.write(message);
    for (let got = 0; got < message.length;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("cat ended early");
      got += value.length;
    }
  }
  const micros = (performance.now() - start) * 1000 / count;
  console.log(`${transport} latency: ${micros.toFixed(0)} µs per 100-byte round trip`);
  await writer.close();
  await session.exited;
  engine.close();
  Deno.exit(0);
}
const results: number[] = [];
const block = new Uint8Array(1024 * 1024).fill(0x5a);
for (let round = 0; round < rounds; round++) {
  const start = performance.now();
  let bytes = 0;
  if (mode === "read") {
    const session = await engine.exec(info.id, ["cat", what]);
    await session.stdin.close();
    for await (const chunk of session.stdout) bytes += chunk.length;
    const { code } = await session.exited;
    if (code !== 0) throw new Error(`cat exited with ${code}`);
  } else {
    const session = await engine.exec(info.id, ["sh", "-c", "cat >/dev/null"]);
    const writer = session.stdin.getWriter();
    for (let i = 0; i < Number(what); i++) {
      await writer.write(block);
      bytes += block.length;
    }
    await writer.close();
    await new Response(session.stdout).arrayBuffer();
    const { code } = await session.exited;
    if (code !== 0) throw new Error(`cat exited with ${code}`);
  }
  results.push(bytes / 1e6 / ((performance.now() - start) / 1000));
}
console.log(`${transport} ${mode}: ${results.map((r) => r.toFixed(0)).join(" ")} MB/s`);
engine.close();
