// Walks through a remote engine: the local engine behind the delay proxy (25 ms each way), so
// `find` and `ls -lR` are served from subtree walks. What they show must be exactly what the
// container shows (names, types, symlink targets), and a change made through the mount must
// never be hidden by a walk fetched before it.

import { deepStrictEqual, ok } from "node:assert/strict";
import { startDelayProxy } from "../../tasks/bench/delay_proxy.ts";
import { ensureTestBed } from "../../tasks/testbed/mod.ts";
import { docker, loggedRpcs, sh, withMount } from "./harness.ts";

const FIND = `-printf '%P %y %l\\n'`;

async function listInside(container: string, dir: string): Promise<string[]> {
  const r = await docker(["exec", container, "sh", "-c", `find ${dir} ${FIND} | sort`]);
  return r.stdout.split("\n");
}

async function listThrough(mountpoint: string, dir: string): Promise<string[]> {
  const r = await sh(mountpoint, `find "$M"${dir} ${FIND} | sort`);
  deepStrictEqual(r.stderr, "");
  return r.stdout.split("\n");
}

Deno.test("walks through a 50 ms round trip show what the container shows", async (t) => {
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  ok(
    bed.dockerHost.startsWith("unix://"),
    `the proxy forwards to a unix socket: ${bed.dockerHost}`,
  );
  const proxy = startDelayProxy({
    target: { transport: "unix", path: bed.dockerHost.slice("unix://".length) },
    delayMs: 25,
  });
  try {
    await withMount("glibc", async (m) => {
      await t.step("find /usr: names, types and symlink targets as inside", async () => {
        const before = m.stderr().length;
        deepStrictEqual(
          await listThrough(m.mountpoint, "/usr"),
          await listInside(m.container, "/usr"),
        );
        const log = m.stderr();
        ok(loggedRpcs(log, "walk", before) > 0, "walks were asked");
        // 690 directories: listed by walks, not one opendir each.
        ok(
          loggedRpcs(log, "opendir", before) < 100,
          `${loggedRpcs(log, "opendir", before)} opendirs`,
        );
      });

      await t.step("ls -lR /usr: symlink targets from the walks", async () => {
        const before = m.stderr().length;
        const r = await sh(m.mountpoint, `ls -lR "$M"/usr | grep -c ' -> '`);
        deepStrictEqual(r.stdout.trim(), "604");
        // 604 symlinks: their targets came with the walks.
        ok(
          loggedRpcs(m.stderr(), "readlink", before) < 100,
          `${loggedRpcs(m.stderr(), "readlink", before)} readlinks`,
        );
      });

      await t.step(
        "changes through the mount are never hidden by walks fetched before",
        async () => {
          const dir = "/usr/share/doc";
          // Walk it (the walk runs ahead into every subdirectory), then change it at once.
          await listThrough(m.mountpoint, dir);
          const first = (await sh(m.mountpoint, `ls "$M"${dir} | head -3`)).stdout.trim().split(
            "\n",
          );
          const change = await sh(
            m.mountpoint,
            [
              `touch "$M"${dir}/${first[0]}/new-file`,
              `mkdir "$M"${dir}/${first[1]}/new-dir`,
              `ln -s somewhere "$M"${dir}/${first[1]}/new-dir/new-link`,
              `rm -r "$M"${dir}/${first[2]}`,
              `ln -s first "$M"${dir}/relinked && ln -sfn second "$M"${dir}/relinked`,
            ].join(" && "),
          );
          deepStrictEqual(change.stderr, "");
          deepStrictEqual(await listThrough(m.mountpoint, dir), await listInside(m.container, dir));
          deepStrictEqual(
            (await sh(m.mountpoint, `readlink "$M"${dir}/relinked`)).stdout.trim(),
            "second",
          );
        },
      );
    }, { env: { DOCKER_HOST: proxy.url }, args: ["--debug"] });
  } finally {
    await proxy.close();
  }
});
