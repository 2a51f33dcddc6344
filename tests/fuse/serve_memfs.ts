// Test helper (run as a separate process): mounts a MemFs at the given directory, prints
// "ready", serves until unmounted. With `--run CMD`, runs `sh -c CMD` against the mount, prints
// its output as one JSON line, then unmounts and exits.
//   deno run -A tests/fuse/serve_memfs.ts MOUNTPOINT [--run CMD] [--method fusermount]

import { mount } from "../../src/fuse/mod.ts";
import { MemFs } from "./memfs.ts";

const [dir, ...rest] = Deno.args;
const run = rest.indexOf("--run") >= 0 ? rest[rest.indexOf("--run") + 1] : undefined;
const method = rest.indexOf("--method") >= 0
  ? rest[rest.indexOf("--method") + 1] as "fusermount" | "syscall"
  : undefined;
const uid = Deno.uid() ?? 0, gid = Deno.gid() ?? 0;
const session = await mount(new MemFs({ rootUid: uid, rootGid: gid, rootMode: 0o755 }), dir, {
  mountMethod: method,
  fsName: "dfh-serve",
});
console.log("ready");
if (run !== undefined) {
  const out = await new Deno.Command("sh", { args: ["-c", run], stdout: "piped", stderr: "piped" })
    .output();
  console.log(JSON.stringify({
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    mounts: (await Deno.readTextFile("/proc/self/mountinfo")).split("\n").filter((l) =>
      l.includes(dir)
    ),
  }));
  await session.unmount({ lazy: false });
} else {
  await session.closed;
}
