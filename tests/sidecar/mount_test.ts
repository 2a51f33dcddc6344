// Sidecar mode against the real engine: targets that cannot take an upload (read-only root,
// non-root user, arm64), the POSIX table through a sidecar mount, image reuse, and that nothing
// of dockerfuse's is left (helpers, mounts) whatever ends the mount.

import { deepStrictEqual, doesNotMatch, equal, match, notEqual, ok } from "node:assert/strict";
import { stepPosixTable } from "../fuse/posix_table.ts";
import { ensureTestBed, type ImageKind } from "../../tasks/testbed/mod.ts";
import { throttledProxy } from "../../tasks/bench/deploy.ts";
import { docker, dockerfuse, isMounted, sh, startMount } from "../e2e/harness.ts";
import {
  helpersOf,
  inspect,
  mountMs,
  satelliteImages,
  startTarget,
  waitNoHelpers,
} from "./helpers.ts";

async function removeTarget(id: string): Promise<void> {
  await docker(["rm", "-f", id], false);
}

const READ_ONLY_CASES: {
  name: string;
  kind: ImageKind;
  options: string[];
  command?: string[];
  ptrace: boolean;
}[] = [
  { name: "root", kind: "glibc", options: [], ptrace: false },
  { name: "USER 1000", kind: "glibc", options: ["--user", "1000"], ptrace: true },
  {
    // Config.User is empty; the entrypoint drops to uid 1000 (like gosu in many images).
    name: "dropped to 1000 by its command",
    kind: "glibc",
    options: [],
    command: ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "sleep", "infinity"],
    ptrace: true,
  },
  { name: "arm64", kind: "arm64", options: [], ptrace: false },
];

for (const c of READ_ONLY_CASES) {
  Deno.test(`sidecar ${c.name}: a --read-only --tmpfs /tmp container mounts (auto)`, async () => {
    const target = await startTarget(
      c.kind,
      ["--read-only", "--tmpfs", "/tmp", ...c.options],
      c.command,
    );
    const m = await startMount(c.kind, { container: target });
    try {
      match(m.stderr(), /read-only and it has no writable volume\): using a sidecar/);
      // Reading works everywhere, as the target sees it.
      const passwd = await sh(m.mountpoint, 'cat "$M/etc/passwd"');
      equal(passwd.code, 0, passwd.stderr);
      const inside = await docker(["exec", target, "cat", "/etc/passwd"]);
      equal(passwd.stdout, inside.stdout);
      const listing = await sh(m.mountpoint, 'ls "$M/" "$M/bin" | wc -l');
      ok(Number(listing.stdout.trim()) > 10, listing.stdout);
      // Writing works in the tmpfs, seen inside the target.
      const wrote = await sh(m.mountpoint, 'printf sidecar > "$M/tmp/written"');
      equal(wrote.code, 0, wrote.stderr);
      equal((await docker(["exec", target, "cat", "/tmp/written"])).stdout, "sidecar");
      // The read-only root answers EROFS.
      for (
        const script of ['printf x > "$M/rootfile"', 'mkdir "$M/newdir"', 'rm "$M/etc/passwd"']
      ) {
        const r = await sh(m.mountpoint, script);
        notEqual(r.code, 0, script);
        match(r.stderr, /Read-only file system/, script);
      }
      // The helper: confined, SYS_PTRACE only for the non-root target.
      const helpers = await helpersOf(target);
      equal(helpers.length, 1);
      const host = (await inspect(helpers[0])).HostConfig as Record<string, unknown>;
      equal(host.PidMode, `container:${target}`);
      equal(host.NetworkMode, "none");
      equal(host.ReadonlyRootfs, true);
      equal(host.AutoRemove, true);
      // No log driver copies the RPC stream.
      equal((host.LogConfig as { Type: string }).Type, "none");
      deepStrictEqual(host.SecurityOpt, ["no-new-privileges"]);
      deepStrictEqual(host.CapAdd ?? [], c.ptrace ? ["SYS_PTRACE"] : []);
      if (c.kind === "arm64") {
        const image = JSON.parse(
          (await docker(["image", "inspect", String((await inspect(helpers[0])).Image)])).stdout,
        )[0];
        equal(image.Architecture, "arm64");
      }
      equal((await docker(["diff", target])).stdout, "");
      equal(await m.stop("SIGTERM"), 0);
      equal(await isMounted(m.mountpoint), false);
      await waitNoHelpers(target);
    } finally {
      await m.cleanup();
      await removeTarget(target);
    }
  });
}

Deno.test("sidecar: auto falls back when the writable volume cannot run the upload (noexec)", async () => {
  const volume = `dockerfuse-sidecar-noexec-${crypto.randomUUID().slice(0, 8)}`;
  await docker([
    "volume",
    "create",
    "--opt",
    "type=tmpfs",
    "--opt",
    "device=tmpfs",
    "--opt",
    "o=noexec,size=300m",
    volume,
  ]);
  let target: string | undefined;
  try {
    target = await startTarget("glibc", ["--read-only", "-v", `${volume}:/vol`]);
    const m = await startMount("glibc", { container: target });
    try {
      match(
        m.stderr(),
        /Cannot start the uploaded satellite in '[^']*' \((?:the runtime refused the exec: )?OCI runtime exec failed[^\n]*permission denied[^\n]*\): using a sidecar; its upload '\.dockerfuse-[0-9a-f]+' is left in the volume/,
      );
      const wrote = await sh(m.mountpoint, 'printf v > "$M/vol/f" && cat "$M/vol/f"');
      equal(wrote.stdout, "v", wrote.stderr);
      equal((await helpersOf(target)).length, 1);
      equal(await m.stop("SIGTERM"), 0);
      await waitNoHelpers(target);
    } finally {
      await m.cleanup();
    }
  } finally {
    if (target !== undefined) await removeTarget(target);
    await docker(["volume", "rm", volume], false);
  }
});

Deno.test("sidecar: the POSIX table through a sidecar mount of a writable container", async (t) => {
  const target = await startTarget("glibc");
  const m = await startMount("glibc", {
    container: target,
    args: ["--allow-other", "--deploy", "sidecar"],
  });
  try {
    await stepPosixTable(t, `${m.mountpoint}/dockerfuse-posix`);
    // Only the table's own directory changed in the target: nothing of the satellite's. (Lines
    // not starting with a change mark continue a name holding a newline.)
    const diff = (await docker(["diff", target])).stdout.split("\n");
    deepStrictEqual(
      diff.filter((l) => /^[ACD] /.test(l) && !/^. \/dockerfuse-posix(\/|$)/.test(l)),
      [],
    );
  } finally {
    await m.cleanup();
    await removeTarget(target);
    await waitNoHelpers(target);
  }
});

Deno.test("sidecar: a second mount reuses the image (nothing uploaded)", async () => {
  const target = await startTarget("glibc", ["--read-only"]);
  try {
    const times: number[] = [];
    let imagesAfterFirst: Map<string, string> | undefined;
    for (const round of [1, 2]) {
      const m = await startMount("glibc", { container: target, args: ["--deploy", "sidecar"] });
      try {
        times.push(mountMs(m.stderr()) ?? NaN);
        if (round === 1) imagesAfterFirst = await satelliteImages();
        else {
          doesNotMatch(m.stderr(), /Created the satellite image/);
          deepStrictEqual(await satelliteImages(), imagesAfterFirst);
        }
        equal(await m.stop("SIGTERM"), 0);
      } finally {
        await m.cleanup();
      }
    }
    console.log(`sidecar mount times (first, second): ${times.join(", ")} ms`);
    equal((await docker(["diff", target])).stdout, "");
    await waitNoHelpers(target);
  } finally {
    await removeTarget(target);
  }
});

Deno.test("sidecar: --path through an absolute symlink resolves inside the target", async () => {
  const target = await startTarget("glibc");
  try {
    const first = await startMount("glibc", { container: target, args: ["--deploy", "sidecar"] });
    try {
      const r = await sh(
        first.mountpoint,
        'mkdir "$M/only-in-target" && printf found > "$M/only-in-target/f" && ' +
          'ln -s /only-in-target "$M/link"',
      );
      equal(r.code, 0, r.stderr);
    } finally {
      await first.cleanup();
    }
    const m = await startMount("glibc", {
      container: target,
      args: ["--deploy", "sidecar", "--path", "/link"],
    });
    try {
      equal((await sh(m.mountpoint, 'cat "$M/f"')).stdout, "found");
    } finally {
      await m.cleanup();
    }
    await waitNoHelpers(target);
  } finally {
    await removeTarget(target);
  }
});

Deno.test("sidecar: SIGKILL of the client leaves no helper", async () => {
  const target = await startTarget("glibc", ["--read-only"]);
  const m = await startMount("glibc", { container: target, args: ["--deploy", "sidecar"] });
  try {
    equal((await helpersOf(target)).length, 1);
    await m.stop("SIGKILL");
    await waitNoHelpers(target);
  } finally {
    await m.cleanup();
    await removeTarget(target);
  }
});

Deno.test("sidecar: removing the target ends the mount (exit 8) and its helper", async () => {
  const target = await startTarget("glibc", ["--read-only", "--tmpfs", "/tmp"]);
  const m = await startMount("glibc", { container: target });
  try {
    equal((await helpersOf(target)).length, 1);
    await docker(["rm", "-f", target]);
    equal(await m.stop("SIGCONT"), 8);
    match(m.stderr(), /Unmounted '[^']*': container '[^']*' (stopped|was removed)/);
    equal(await isMounted(m.mountpoint), false);
    await waitNoHelpers(target);
  } finally {
    await m.cleanup();
    await removeTarget(target);
  }
});

Deno.test("sidecar: refusals exit 7 with the reason and leave nothing", async () => {
  const target = await startTarget("glibc", ["--read-only", "--tmpfs", "/tmp"]);
  const mountpoint = await Deno.makeTempDir({ prefix: "dockerfuse-sidecar-" });
  try {
    const upload = await dockerfuse(["mount", "--deploy", "upload", target, mountpoint]);
    equal(upload.code, 7, upload.stderr);
    match(
      upload.stderr,
      /Cannot upload the satellite into '[^']*': its root filesystem is read-only/,
    );
    const asUser = await dockerfuse([
      "mount",
      "-o",
      "deploy=sidecar",
      "--user",
      "1000",
      target,
      mountpoint,
    ]);
    equal(asUser.code, 7, asUser.stderr);
    match(asUser.stderr, /the sidecar runs as root/);
    // A target in another PID namespace (here the host's): its /proc/1 is not its own.
    const shared = await startTarget("glibc", ["--pid", "host", "--read-only"]);
    try {
      const r = await dockerfuse(["mount", "--deploy", "sidecar", shared, mountpoint]);
      equal(r.code, 7, r.stderr);
      match(r.stderr, /it shares the PID namespace 'host'/);
      deepStrictEqual(await helpersOf(shared), []);
    } finally {
      await removeTarget(shared);
    }
    const bad = await dockerfuse(["mount", "-o", "deploy=elsewhere", target, mountpoint]);
    equal(bad.code, 2);
    match(bad.stderr, /-o deploy must be one of upload, sidecar, auto/);
    equal(await isMounted(mountpoint), false);
    deepStrictEqual(await helpersOf(target), []);
    equal((await docker(["diff", target])).stdout, "");
  } finally {
    await removeTarget(target);
    await Deno.remove(mountpoint, { recursive: true });
  }
});

Deno.test("sidecar: auto picks the sidecar for a remote engine (tcp)", async () => {
  const target = await startTarget("glibc");
  const bed = await ensureTestBed({ kinds: ["glibc"] });
  // A plain TCP listener in front of the engine's socket makes it a remote engine.
  const proxy = throttledProxy(bed.dockerHost.replace(/^unix:\/\//, ""), 10_000);
  try {
    const m = await startMount("glibc", {
      container: target,
      env: { DOCKER_HOST: `tcp://127.0.0.1:${proxy.port}` },
    });
    try {
      equal((await helpersOf(target)).length, 1);
      doesNotMatch(m.stderr(), /uploading the satellite instead/);
      equal((await sh(m.mountpoint, 'cat "$M/etc/hostname"')).code, 0);
      equal(await m.stop("SIGTERM"), 0);
      await waitNoHelpers(target);
      equal((await docker(["diff", target])).stdout, "");
    } finally {
      await m.cleanup();
    }
    // The engine connection drops: without reconnect the client ends (exit 8), the helper with
    // it (tests/reliability/reconnect_test.ts covers the reconnecting default).
    const dropped = await startMount("glibc", {
      container: target,
      env: { DOCKER_HOST: `tcp://127.0.0.1:${proxy.port}` },
      args: ["--no-reconnect"],
    });
    try {
      equal((await helpersOf(target)).length, 1);
      proxy.close();
      equal(await dropped.stop("SIGCONT"), 8, dropped.stderr());
      await waitNoHelpers(target);
    } finally {
      await dropped.cleanup();
    }
  } finally {
    proxy.close();
    await removeTarget(target);
  }
});

Deno.test("sidecar: two first mounts at once load the same image (its id is its content's)", async () => {
  const pruned = await dockerfuse(["prune"]);
  equal(pruned.code, 0, pruned.stderr);
  const targets = await Promise.all([1, 2].map(() => startTarget("glibc", ["--read-only"])));
  try {
    const mounts = await Promise.all(
      targets.map((target) =>
        startMount("glibc", { container: target, args: ["--deploy", "sidecar"] })
      ),
    );
    try {
      // Usually both load it (when one is much later, it finds the other's).
      ok(mounts.some((m) => /Created the satellite image/.test(m.stderr())));
      for (const m of mounts) {
        equal((await sh(m.mountpoint, 'cat "$M/etc/hostname"')).code, 0);
      }
      equal((await satelliteImages()).size, 1);
      for (const m of mounts) equal(await m.stop("SIGTERM"), 0);
    } finally {
      for (const m of mounts) await m.cleanup();
    }
    for (const target of targets) await waitNoHelpers(target);
  } finally {
    for (const target of targets) await removeTarget(target);
  }
});

// Last: the images the tests above made go away.
Deno.test("sidecar: dockerfuse prune removes the satellite images", async () => {
  const target = await startTarget("glibc", ["--read-only"]);
  try {
    const m = await startMount("glibc", { container: target, args: ["--deploy", "sidecar"] });
    // An image in use by a running helper is not removed.
    const busy = await dockerfuse(["prune"]);
    equal(busy.code, 3, busy.stderr);
    ok((await satelliteImages()).size > 0);
    equal(await m.stop("SIGTERM"), 0);
    await m.cleanup();
    await waitNoHelpers(target);
  } finally {
    await removeTarget(target);
  }
  const pruned = await dockerfuse(["prune"]);
  equal(pruned.code, 0, pruned.stderr);
  match(pruned.stderr, /Removed \d+ satellite image\(s\): dockerfuse-satellite:/);
  equal((await satelliteImages()).size, 0);
  const again = await dockerfuse(["prune"]);
  equal(again.code, 0);
  match(again.stderr, /No satellite image to remove/);
});
