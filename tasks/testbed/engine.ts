/** Finding a Docker engine, or starting a private one on this host. */

import { exists, log, run, type RunResult } from "./system.ts";

export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";
export const DOCKERD_LOG = "/var/log/dockerfuse-dockerd.log";
const START_TIMEOUT_MS = 60_000;

/** The engine address the docker CLI would use (DOCKER_HOST or the default socket). */
export function dockerHostFromEnv(): string {
  const host = Deno.env.get("DOCKER_HOST");
  return host && host.length > 0 ? host : DEFAULT_DOCKER_HOST;
}

/** Runs the docker CLI against `host`. */
export function docker(host: string, args: string[], check = true): Promise<RunResult> {
  return run("docker", ["--host", host, ...args], { check, timeoutMs: 600_000 });
}

/** True when the engine answers (server version known) within a few seconds. */
export async function engineAnswers(host: string): Promise<boolean> {
  try {
    const r = await run("docker", ["--host", host, "version", "--format", "{{.Server.Version}}"], {
      check: false,
      timeoutMs: 10_000,
    });
    return r.code === 0 && r.stdout.trim().length > 0;
  } catch {
    return false;
  }
}

/**
 * Starts dockerd fully detached (own session, output to DOCKERD_LOG) on the default
 * socket, without bridge or iptables rules, and waits until it answers.
 */
export async function startPrivateDockerd(): Promise<void> {
  const args = [
    "--bridge=none",
    "--iptables=false",
    "--ip-masq=false",
    `--host=${DEFAULT_DOCKER_HOST}`,
  ];
  log(`starting dockerd ${args.join(" ")} (log: ${DOCKERD_LOG})`);
  const script = `exec dockerd ${args.join(" ")} >>${DOCKERD_LOG} 2>&1 </dev/null`;
  const child = new Deno.Command("setsid", {
    args: ["-f", "sh", "-c", script],
    cwd: "/", // it outlives this checkout, whose directory may go away
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await child.status;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await engineAnswers(DEFAULT_DOCKER_HOST)) {
      log("dockerd answers");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const tail = await exists(DOCKERD_LOG)
    ? (await Deno.readTextFile(DOCKERD_LOG)).trim().split("\n").slice(-20).join("\n")
    : "(no log)";
  throw new Error(
    `Cannot start dockerd: no answer on ${DEFAULT_DOCKER_HOST} after ${
      START_TIMEOUT_MS / 1000
    } s. Last lines of ${DOCKERD_LOG}:\n${tail}`,
  );
}
