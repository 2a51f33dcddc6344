/**
 * Chooses how the satellite reaches a container: uploaded into it (`upload`), or run beside it
 * in a helper container from the reusable satellite image (`sidecar`), or `auto`: on a local
 * engine, upload where it works and the sidecar where it cannot (read-only root without a
 * writable volume, no space, a volume that cannot execute it), said in the log; on a remote
 * engine, the sidecar first (no upload per mount), the upload where the engine refuses it.
 *
 * @module
 */

import type { ContainerInfo, Engine } from "./engine.ts";
import { DockerError, errorMessage } from "./errors.ts";
import type { ExecSession } from "./exec.ts";
import { EngineApi } from "./http.ts";
import { type DeployOptions, deploySatellite, readManifest } from "./satellite.ts";
import { ensureSatelliteImage } from "./satellite_image.ts";
import { startSidecar } from "./sidecar.ts";
import { randomHex, withHead } from "./bytes.ts";

export type DeployMode = "upload" | "sidecar" | "auto";
export const DEPLOY_MODES: readonly DeployMode[] = ["upload", "sidecar", "auto"];

export interface ChosenDeployOptions extends DeployOptions {
  mode: DeployMode;
  /** how long `auto` waits for an uploaded satellite's first output (default 60 s) */
  firstOutputTimeoutMs?: number;
}

export interface Deployed {
  session: ExecSession;
  mode: "upload" | "sidecar";
}

/** True for a user the sidecar can serve (it always runs as root). */
function isRootUser(user: string | undefined): boolean {
  return user === undefined || user === "" || /^(root|0)(:(root|0))?$/.test(user);
}

/**
 * Why `auto` skips the upload altogether for this container, or undefined to try it: a
 * read-only root with no writable volume has nowhere to take it.
 */
export function uploadImpossible(container: ContainerInfo): string | undefined {
  if (container.readOnlyRootfs && (container.writableMounts ?? []).length === 0) {
    return "its root filesystem is read-only and it has no writable volume";
  }
  return undefined;
}

/** Deploys per `options.mode`; see the module doc. Throws DockerError. */
export async function deployChosen(
  engine: Engine,
  container: ContainerInfo,
  bundleDir: string,
  options: ChosenDeployOptions,
): Promise<Deployed> {
  const sidecar = async (): Promise<Deployed> => {
    if (!isRootUser(options.user)) {
      throw new DockerError(
        "user",
        `Cannot run the satellite beside '${container.name}' as '${options.user}': ` +
          `the sidecar runs as root (leave --user out)`,
      );
    }
    const manifest = await readManifest(bundleDir);
    if (manifest.arch !== container.arch) {
      throw new DockerError(
        "unsupported",
        `Cannot start the satellite beside '${container.name}': the bundle is for ${manifest.arch}, the container is ${container.arch}`,
      );
    }
    const api = new EngineApi(engine.dial, engine.apiVersion);
    // Made sure of while the target is inspected (each a round trip to a remote engine).
    const image = ensureSatelliteImage(engine, bundleDir, manifest, {
      onProgress: options.onProgress,
      log: options.log,
    }).then((r) => r.ref);
    const session = await startSidecar(api, container, manifest, {
      root: options.root,
      image,
      log: options.log,
    });
    return { session, mode: "sidecar" };
  };
  switch (options.mode) {
    case "upload":
      return {
        session: await deploySatellite(engine, container, bundleDir, options),
        mode: "upload",
      };
    case "sidecar":
      return await sidecar();
    case "auto":
      break;
  }
  const impossible = uploadImpossible(container);
  if (impossible !== undefined && isRootUser(options.user)) {
    options.log?.(
      `Cannot upload the satellite into '${container.name}' (${impossible}): using a sidecar`,
    );
    return await sidecar();
  }
  // Remote engines: the upload (~42 MB compressed) costs seconds per mount over a 100 Mbit/s
  // link, the sidecar from the reused image a few round trips (README, "Sidecar mode").
  if (engine.isRemote && isRootUser(options.user)) {
    try {
      return await sidecar();
    } catch (error) {
      // The engine refused the helper (e.g. no `--pid container:`), or the target's PID
      // namespace is shared: upload instead.
      if (
        !(error instanceof DockerError) || (error.code !== "api" && error.code !== "unsupported")
      ) {
        throw error;
      }
      options.log?.(`${error.message}: uploading the satellite instead`);
    }
  }
  let session: ExecSession;
  const random = options.randomName ?? randomHex;
  const name = random();
  try {
    session = await deploySatellite(engine, container, bundleDir, {
      ...options,
      randomName: () => name,
    });
  } catch (error) {
    // "api": the engine refused the upload (read-only, no space, …); "exec": the runtime refused
    // to run it (a noexec volume took it; the message names the upload left there). Anything
    // else is no reason to think a sidecar would fare better.
    if (
      !(error instanceof DockerError) || (error.code !== "api" && error.code !== "exec") ||
      !isRootUser(options.user)
    ) {
      throw error;
    }
    if (error.code === "exec") {
      options.log?.(leftUpload(container, name, error.reason));
    } else {
      options.log?.(`${error.message}: using a sidecar`);
    }
    return await sidecar();
  }
  // A volume may take the upload but not run it (noexec): watch for the first answer. A
  // writable root never is noexec, so its sessions are not wrapped.
  if (!container.readOnlyRootfs) return { session, mode: "upload" };
  const started = await firstOutput(session, options.firstOutputTimeoutMs ?? 60_000);
  if (started.ok) return { session: started.session, mode: "upload" };
  if (!isRootUser(options.user)) {
    throw new DockerError(
      "api",
      `Cannot start the satellite in '${container.name}': ${started.why}`,
    );
  }
  options.log?.(leftUpload(container, name, started.why));
  return await sidecar();
}

/** The satellite never ran, so its upload dir was not removed: the log line says where it is. */
function leftUpload(container: ContainerInfo, name: string, why: string): string {
  return `Cannot start the uploaded satellite in '${container.name}' (${why}): using a ` +
    `sidecar; its upload '.dockerfuse-${name}' is left in the volume it went to (one of ` +
    `${(container.writableMounts ?? []).join(", ")})`;
}

/**
 * Waits for the session's first stdout bytes (the satellite's hello). Returns the session with
 * those bytes put back, or why it ended without any (e.g. the upload dir is noexec).
 */
async function firstOutput(
  session: ExecSession,
  timeoutMs: number,
): Promise<{ ok: true; session: ExecSession } | { ok: false; why: string }> {
  const reader = session.stdout.getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let first: ReadableStreamReadResult<Uint8Array>;
  try {
    first = await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer after ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (error) {
    session.kill();
    return { ok: false, why: errorMessage(error) };
  } finally {
    clearTimeout(timer);
  }
  if (first.done) {
    const stderr = await readAll(session.stderr, 4096);
    const { code } = await session.exited;
    session.kill();
    return {
      ok: false,
      why: `it ended at once (code ${code ?? "unknown"})${stderr ? `: ${stderr}` : ""}`,
    };
  }
  const head = first.value;
  // The satellite's first frame starts with its length, below 16 MiB: a 0 byte. Anything else
  // is the engine's or the runtime's message (e.g. "OCI runtime exec failed: … permission
  // denied" from a noexec volume) on the stream.
  if (head.length > 0 && head[0] !== 0) {
    session.kill();
    const text = new TextDecoder().decode(head).trim().split("\n")[0].slice(0, 400);
    return { ok: false, why: text };
  }
  return { ok: true, session: { ...session, stdout: withHead(head, reader) } };
}

async function readAll(stream: ReadableStream<Uint8Array>, limit: number): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      if (text.length > limit) break;
    }
  } catch {
    // use what we have
  }
  return text.trim().slice(-limit);
}
