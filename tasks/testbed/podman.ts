/**
 * Podman as a second engine: its Docker-compatible API (`podman system service`) on a socket of
 * its own, installed from Debian and started by the test bed, with the bed's images copied over
 * from Docker (`docker save | podman load`), no registry involved.
 *
 * @module
 */

import { docker, engineAnswers } from "./engine.ts";
import { type Apt, exists, hasCommand, isDebian, isRoot, log, run } from "./system.ts";

export const PODMAN_SOCKET = "/run/podman/podman.sock";
/** DOCKER_HOST-style address of the Podman service the bed starts. */
export const PODMAN_HOST = `unix://${PODMAN_SOCKET}`;
export const PODMAN_LOG = "/var/log/dockerfuse-podman.log";
const START_TIMEOUT_MS = 60_000;

/**
 * `docker run` arguments every Podman test container needs here: without them crun cannot
 * apply Podman's default rlimits inside this sandbox and no container starts (measured with
 * Debian's podman 4.3).
 */
export const PODMAN_RUN_ARGS: readonly string[] = [
  "--ulimit",
  "nofile=1024:1024",
  "--ulimit",
  "nproc=1024:1024",
];

/** True when the Podman service answers the Docker API on its socket. */
export async function podmanAnswers(): Promise<boolean> {
  return await exists(PODMAN_SOCKET) && await engineAnswers(PODMAN_HOST);
}

/**
 * Installs podman when missing (root on Debian), starts `podman system service` detached (own
 * session, output to PODMAN_LOG) unless it answers already, and waits until it answers.
 * Idempotent; only checks the socket when everything is there.
 */
export async function ensurePodman(apt: Apt): Promise<void> {
  if (await podmanAnswers()) return;
  if (!(await hasCommand("podman"))) {
    if (!isRoot() || !(await isDebian())) {
      throw new Error(
        "Cannot set up Podman: it is not installed (apt-get install podman, as root)",
      );
    }
    await apt.install(["podman"]);
  }
  if (!isRoot()) throw new Error("Cannot start the Podman service: it needs root here");
  await Deno.mkdir("/run/podman", { recursive: true });
  await Deno.remove(PODMAN_SOCKET).catch(() => {}); // left by a service that died
  log(`starting podman system service on ${PODMAN_HOST} (log: ${PODMAN_LOG})`);
  const script =
    `exec podman system service --time=0 ${PODMAN_HOST} >>${PODMAN_LOG} 2>&1 </dev/null`;
  // cwd "/": the service (and every conmon it starts) outlives this checkout, whose directory
  // may be removed meanwhile ("conmon: Failed to get working directory" then fails every start).
  const child = new Deno.Command("setsid", {
    args: ["-f", "sh", "-c", script],
    cwd: "/",
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await child.status;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await podmanAnswers()) {
      log("podman answers");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const tail = await exists(PODMAN_LOG)
    ? (await Deno.readTextFile(PODMAN_LOG)).trim().split("\n").slice(-20).join("\n")
    : "(no log)";
  throw new Error(
    `Cannot start the Podman service: no answer on ${PODMAN_HOST} after ${
      START_TIMEOUT_MS / 1000
    } s. Last lines of ${PODMAN_LOG}:\n${tail}`,
  );
}

/** Image references Podman has (Podman names loaded images "localhost/<repo>:<tag>"). */
async function podmanImages(): Promise<Set<string>> {
  const r = await run("podman", ["images", "--format", "{{.Repository}}:{{.Tag}}"]);
  return new Set(
    r.stdout.split("\n").filter((l) => l.length > 0).map((l) => l.replace(/^localhost\//, "")),
  );
}

/** Copies the images `refs` from the Docker engine at `dockerHost` into Podman when missing. */
export async function copyImagesToPodman(dockerHost: string, refs: string[]): Promise<void> {
  const present = await podmanImages();
  const missing = refs.filter((ref) => !present.has(ref));
  if (missing.length === 0) return;
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-podman-load-" });
  try {
    for (const ref of missing) {
      log(`copying ${ref} from Docker to Podman`);
      await docker(dockerHost, ["save", "-o", `${dir}/image.tar`, ref]);
      await run("podman", ["load", "-q", "-i", `${dir}/image.tar`]);
      await Deno.remove(`${dir}/image.tar`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const now = await podmanImages();
  const still = missing.filter((ref) => !now.has(ref));
  if (still.length > 0) {
    throw new Error(`Cannot copy ${still.join(", ")} into Podman: podman load did not tag it`);
  }
}
