// The images shaped like real ones are what they claim to be (else the e2e tests on them would
// prove nothing): no /etc/passwd and no /tmp where there should be none, the non-root USER, the
// arm64 architecture; the same images are in Podman; the four classic tags do not depend on
// the new recipe.

import { deepStrictEqual, equal, ok } from "node:assert/strict";
import { docker } from "../../tasks/testbed/engine.ts";
import { imageRef } from "../../tasks/testbed/images.ts";
import {
  ALL_KINDS,
  ensurePodmanBed,
  ensureTestBed,
  NONROOT_UID,
  REAL_KINDS,
  type RealKind,
  removeTestContainer,
  smallDataEntries,
  type TestBed,
} from "../../tasks/testbed/mod.ts";

/** Paths (without "./") of a created, never started container of the image: its filesystem. */
async function files(bed: TestBed, kind: RealKind): Promise<Map<string, string>> {
  const created = await docker(bed.dockerHost, [
    "create",
    ...(kind === "arm64-bare" ? ["--platform", "linux/arm64"] : []),
    bed.images[kind],
  ]);
  const id = created.stdout.trim().split("\n").pop()!;
  const dir = await Deno.makeTempDir({ prefix: "dfh-export-" });
  try {
    await docker(bed.dockerHost, ["export", "-o", `${dir}/fs.tar`, id]);
    const list = await new Deno.Command("tar", {
      args: ["--numeric-owner", "-tvf", `${dir}/fs.tar`],
    }).output();
    ok(list.success);
    const out = new Map<string, string>();
    for (const line of new TextDecoder().decode(list.stdout).split("\n")) {
      const m = /^(\S+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s+(.*?)(?: -> .*)?$/.exec(line);
      if (m) out.set(m[3].replace(/^\.?\//, "").replace(/\/$/, ""), `${m[1]} ${m[2]}`);
    }
    return out;
  } finally {
    await removeTestContainer(bed, id);
    await Deno.remove(dir, { recursive: true });
  }
}

async function inspect(bed: TestBed, kind: RealKind, format: string): Promise<string> {
  return (await docker(bed.dockerHost, ["image", "inspect", "--format", format, bed.images[kind]]))
    .stdout.trim();
}

Deno.test("real images: scratch has one binary and /data, no /etc/passwd, no /tmp", async () => {
  const bed = await ensureTestBed({ kinds: ["scratch"] });
  const fs = await files(bed, "scratch");
  ok(fs.has("pause") && fs.get("pause")!.startsWith("-rwx"), [...fs.keys()].join(" "));
  for (const e of smallDataEntries("scratch")) ok(fs.has(`data/${e.path}`), e.path);
  ok(!fs.has("etc/passwd") && !fs.has("tmp") && !fs.has("bin"), [...fs.keys()].join(" "));
  equal(await inspect(bed, "scratch", "{{.Architecture}} {{.Config.User}}"), "amd64");
});

Deno.test("real images: nonroot runs as app (uid 1000) and owns /data", async () => {
  const bed = await ensureTestBed({ kinds: ["nonroot"] });
  equal(await inspect(bed, "nonroot", "{{.Config.User}}"), "app");
  const fs = await files(bed, "nonroot");
  ok(fs.has("etc/passwd") && fs.get("tmp")?.startsWith("drwxrwxrwt"), [...fs.keys()].join(" "));
  equal(fs.get("data/hello.txt")?.split(" ")[1], `${NONROOT_UID}/${NONROOT_UID}`);
});

Deno.test("real images: arm64-bare is arm64 busybox without /etc/passwd or /tmp", async () => {
  const bed = await ensureTestBed({ kinds: ["arm64-bare"] });
  equal(await inspect(bed, "arm64-bare", "{{.Architecture}}"), "arm64");
  const fs = await files(bed, "arm64-bare");
  ok(fs.has("bin/busybox") && fs.has("data/hello.txt"), [...fs.keys()].join(" "));
  ok(!fs.has("etc/passwd") && !fs.has("tmp"), [...fs.keys()].join(" "));
});

Deno.test("real images: Podman has the same images, and the classic tags ignore the new recipe", async () => {
  const bed = await ensurePodmanBed({ kinds: [...REAL_KINDS] });
  equal(bed.engine, "podman");
  for (const kind of REAL_KINDS) {
    const r = await docker(bed.dockerHost, [
      "image",
      "inspect",
      "--format",
      "{{.Id}}",
      bed.images[kind],
    ]);
    const id = (await docker((await ensureTestBed({ kinds: [kind] })).dockerHost, [
      "image",
      "inspect",
      "--format",
      "{{.Id}}",
      bed.images[kind],
    ])).stdout.trim();
    // Podman keeps the image's config digest as its id.
    equal(r.stdout.trim().replace(/^sha256:/, ""), id.replace(/^sha256:/, ""));
  }
  const classic = await Promise.all(ALL_KINDS.map((k) => imageRef(k)));
  deepStrictEqual(classic, ALL_KINDS.map((k) => bed.images[k]));
  for (const ref of classic) ok(!REAL_KINDS.some((k) => ref.includes(`/${k}:`)), ref);
});
