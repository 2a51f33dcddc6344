// Test helper, run as root in a mount namespace of its own (unshare --mount --propagation
// private): puts fusectl in the asked state there (`mounted` or `unmounted` at
// /sys/fs/fuse/connections), mounts a MemFs, holds a file of it open, aborts the session and
// prints one JSON line: what abort() returned, the errno a read of the open file got, and the
// fusectl mounts and private fusectl dirs seen before and after.
//   deno run -A tests/volume/fusectl_child.ts mounted|unmounted

import { mount } from "../../src/fuse/mod.ts";
import { MemFs } from "../fuse/memfs.ts";

const FUSECTL = "/sys/fs/fuse/connections";
const want = Deno.args[0];

async function fusectlMounts(): Promise<string[]> {
  return (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
    .filter((line) => line.split(" - ")[1]?.startsWith("fusectl "))
    .map((line) => line.split(" ")[4]);
}

async function privateDirs(): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir("/tmp")) {
    if (e.name.startsWith("dockerfuse-fusectl-")) names.push(e.name);
  }
  return names;
}

async function sh(command: string): Promise<void> {
  const out = await new Deno.Command("sh", { args: ["-c", command] }).output();
  if (!out.success) throw new Error(`'${command}' failed: ${new TextDecoder().decode(out.stderr)}`);
}

// This namespace's copies of the host's mounts: changing them here leaves the host alone.
for (const path of (await fusectlMounts()).reverse()) await sh(`umount ${path}`);
if (want === "mounted") await sh(`mount -t fusectl fusectl ${FUSECTL}`);
const before = { mounts: await fusectlMounts(), dirs: await privateDirs() };

const dir = await Deno.makeTempDir({ prefix: "dfh-fusectl-" });
const session = await mount(new MemFs({ rootMode: 0o777 }), dir);
await Deno.writeTextFile(`${dir}/f`, "held open");
const file = await Deno.open(`${dir}/f`, { read: true });
const aborted = await session.abort();
let readError = "none";
try {
  await file.read(new Uint8Array(16));
} catch (error) {
  readError = (error as { code?: string }).code ?? String(error);
}
file.close();
await Deno.remove(dir).catch(() => {});
console.log(JSON.stringify({
  aborted,
  readError,
  before,
  after: { mounts: await fusectlMounts(), dirs: await privateDirs() },
}));
