// `satellite --root-in BASE`: the served root resolves inside BASE (the sidecar's /proc/1/root),
// symlinks and ".." included, with openat2(RESOLVE_IN_ROOT) and with the readlinkat walk.

import { equal, rejects, throws } from "node:assert/strict";
import { startSatellite, valueOf } from "../satellite/harness.ts";

async function makeBase(): Promise<string> {
  const base = await Deno.makeTempDir({ prefix: "dockerfuse-rootin-" });
  await Deno.mkdir(`${base}/target/sub`, { recursive: true });
  await Deno.writeTextFile(`${base}/target/sub/f`, "inside");
  await Deno.symlink("/target", `${base}/abs`); // absolute: BASE/target, never the host's /target
  await Deno.symlink("../../../target", `${base}/rel`); // climbs above BASE: clamped at BASE
  await Deno.symlink("/abs/sub", `${base}/chain`); // a link through a link
  await Deno.symlink("/loop", `${base}/loop`);
  return base;
}

for (const walk of [false, true]) {
  const how = walk ? "readlinkat walk" : "openat2";
  Deno.test(`root-in (${how}): symlinks in the root path resolve inside the base`, async () => {
    const base = await makeBase();
    try {
      throws(() => Deno.statSync("/target/sub/f"), "the host must not have /target");
      for (
        const [root, path] of [["/abs", "sub/f"], ["/rel", "sub/f"], ["/chain", "f"], [
          "/abs/../../target/sub",
          "f",
        ]]
      ) {
        const h = startSatellite(root, {
          args: ["--root-in", base, ...(walk ? ["--walk-paths"] : [])],
        });
        try {
          await h.client.ready;
          const st = valueOf(await h.client.call.lstat({ path }));
          equal(st.size, 6n, `${root} → ${path}`);
        } finally {
          await h.stop();
        }
      }
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  });

  Deno.test(`root-in (${how}): a missing root or a symlink loop fails the handshake`, async () => {
    const base = await makeBase();
    try {
      for (const [root, errno] of [["/missing", 2], ["/loop", 40]] as const) {
        const h = startSatellite(root, {
          args: ["--root-in", base, ...(walk ? ["--walk-paths"] : [])],
        });
        await rejects(h.client.ready, new RegExp(`errno ${errno}\\b`));
        equal(await h.stop(), 1);
      }
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  });
}
