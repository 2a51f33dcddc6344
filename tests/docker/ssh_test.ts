// ssh:// engines go through `ssh … docker system dial-stdio`, like the Docker CLI. Here a stand-in
// `ssh` in PATH records its arguments and runs dial-stdio against the test bed's engine.

import { connectEngine } from "../../src/docker/mod.ts";
import { ok } from "node:assert/strict";
import { bed, readAll, withContainer } from "./helpers.ts";

Deno.test("ssh engine: API calls and exec streams over `docker system dial-stdio`", async () => {
  const theBed = await bed();
  const bin = await Deno.makeTempDir({ prefix: "dfh-ssh-" });
  try {
    await Deno.writeTextFile(
      `${bin}/ssh`,
      `#!/bin/sh\necho "$@" >> ${bin}/calls\nexec docker -H ${theBed.dockerHost} system dial-stdio\n`,
      { mode: 0o755 },
    );
    const engine = await connectEngine({
      env: { DOCKER_HOST: "ssh://deploy@engine.example:2222", PATH: `${bin}:/usr/bin:/bin` },
      home: "/nonexistent-home",
    });
    try {
      ok(engine.isRemote);
      ok(engine.description === "ssh://deploy@engine.example:2222", engine.description);
      await withContainer("musl", async (id) => {
        const info = await engine.inspectContainer(id);
        ok(info.id === id);
        const session = await engine.exec(id, ["sh", "-c", "cat; echo done >&2"]);
        const writer = session.stdin.getWriter();
        await writer.write(new TextEncoder().encode("through ssh\n"));
        await writer.close();
        const [out, err] = await Promise.all([readAll(session.stdout), readAll(session.stderr)]);
        ok(new TextDecoder().decode(out) === "through ssh\n");
        ok(new TextDecoder().decode(err) === "done\n");
        ok((await session.exited).code === 0);
      });
    } finally {
      engine.close();
    }
    const calls = (await Deno.readTextFile(`${bin}/calls`)).trim().split("\n");
    ok(calls.length >= 2, calls.join("\n"));
    for (const call of calls) {
      ok(
        call ===
          "-o ConnectTimeout=30 -T -l deploy -p 2222 -- engine.example docker system dial-stdio",
        call,
      );
    }
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});
