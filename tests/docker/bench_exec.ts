// Exec stream throughput: `deno run -A tests/docker/bench_exec.ts raw|dockerode CONTAINER FILE [ROUNDS]`
// Prints MB/s per round for reading FILE through `cat` in CONTAINER over an exec session.
import { connectEngine } from "../../src/docker/mod.ts";

const transport = Deno.args[0] === "dockerode" ? "dockerode" : "raw";
const container = Deno.args[1] ?? "dfh-dev1";
const file = Deno.args[2] ?? "/data/big.bin";
const rounds = Number(Deno.args[3] ?? 3);
const engine = await connectEngine({ execTransport: transport });
const info = await engine.inspectContainer(container);
const results: number[] = [];
for (let round = 0; round < rounds; round++) {
  const start = performance.now();
  const session = await engine.exec(info.id, ["cat", file]);
  await session.stdin.close();
  const stderr = new Response(session.stderr).text();
  let bytes = 0;
  for await (const chunk of session.stdout) bytes += chunk.length;
  const { code } = await session.exited;
  const seconds = (performance.now() - start) / 1000;
  if (code !== 0) throw new Error(`cat exited with ${code}: ${await stderr}`);
  results.push(bytes / 1e6 / seconds);
}
console.log(`${transport}: ${results.map((r) => r.toFixed(0)).join(" ")} MB/s`);
engine.close();
