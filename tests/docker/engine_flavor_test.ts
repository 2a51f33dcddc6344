// What the engine layer reads from Docker and from Podman: which engine answers, and whether a
// read-only container's tmpfs mounts allow exec (Docker reports the options given and defaults
// to noexec; Podman reports the options in use), checked against the container's own mounts.

import { deepStrictEqual, equal } from "node:assert/strict";
import {
  ensurePodmanBed,
  ensureTestBed,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";
import { engineFor } from "./helpers.ts";

const RUN_ARGS = [
  "--read-only",
  "-v",
  "/vol",
  "--tmpfs",
  "/plain",
  "--tmpfs",
  "/withexec:exec",
  "--tmpfs",
  "/without:noexec",
];

/** Mount options of `path` as the kernel has them in the container's mount namespace. */
async function kernelExec(bed: TestBed, id: string, path: string): Promise<boolean> {
  const pid = (await new Deno.Command("docker", {
    args: ["--host", bed.dockerHost, "inspect", "--format", "{{.State.Pid}}", id],
  }).output()).stdout;
  const mountinfo = await Deno.readTextFile(
    `/proc/${new TextDecoder().decode(pid).trim()}/mountinfo`,
  );
  const line = mountinfo.split("\n").find((l) => l.split(" ")[4] === path);
  if (line === undefined) throw new Error(`${path} is not mounted in the container`);
  return !line.split(" ")[5].split(",").includes("noexec");
}

for (
  const [name, bedFor] of [
    ["docker", () => ensureTestBed({ kinds: ["scratch"] })],
    ["podman", () => ensurePodmanBed({ kinds: ["scratch"] })],
  ] as const
) {
  Deno.test(`engine (${name}): flavor, writable mounts and tmpfs exec as the kernel has them`, async () => {
    const bed = await bedFor();
    const engine = await engineFor(bed);
    const id = await startTestContainer(bed, "scratch", { runArgs: RUN_ARGS });
    try {
      equal(engine.flavor, name);
      const info = await engine.inspectContainer(id);
      equal(info.readOnlyRootfs, true);
      deepStrictEqual(info.writableMounts, ["/vol"]);
      for (const path of ["/plain", "/withexec", "/without"]) {
        const listed = info.tmpfsMounts?.find((t) => t.path === path);
        equal(listed?.exec, await kernelExec(bed, id, path), `${path}: ${JSON.stringify(listed)}`);
      }
    } finally {
      engine.close();
      await removeTestContainer(bed, id);
    }
  });
}
