/** Shared helpers for the Docker layer tests (real engine, via the test bed). */

import { rejects } from "node:assert/strict";
import {
  ensureTestBed,
  type ImageKind,
  removeTestContainer,
  startTestContainer,
  type TestBed,
} from "../../tasks/testbed/mod.ts";
import { connectEngine, type Engine, type EngineOptions } from "../../src/docker/mod.ts";

/** Asserts that `promise` rejects with a `type` (node:assert/strict `rejects`); returns the error. */
export async function assertRejects<E extends Error>(
  promise: Promise<unknown>,
  type: new (...args: never[]) => E,
): Promise<E> {
  let caught: unknown;
  await rejects(
    promise.catch((error) => {
      caught = error;
      throw error;
    }),
    type,
  );
  return caught as E;
}

let bedPromise: Promise<TestBed> | undefined;

/** The test bed (engine + images); throws, failing the test, when it cannot be set up. */
export function bed(kinds?: ImageKind[]): Promise<TestBed> {
  if (kinds) return ensureTestBed({ kinds });
  bedPromise ??= ensureTestBed();
  return bedPromise;
}

/** An engine connected the way users connect, pointed at the bed's engine. */
export async function engineFor(bed: TestBed, options: EngineOptions = {}): Promise<Engine> {
  return await connectEngine({
    env: { DOCKER_HOST: bed.dockerHost, PATH: Deno.env.get("PATH") },
    home: "/nonexistent-home",
    ...options,
  });
}

/** Runs fn with a fresh test container of the kind, removed afterwards. */
export async function withContainer<T>(
  kind: ImageKind,
  fn: (id: string, bed: TestBed) => Promise<T>,
): Promise<T> {
  const theBed = await bed();
  const id = await startTestContainer(theBed, kind);
  try {
    return await fn(id, theBed);
  } finally {
    await removeTestContainer(theBed, id);
  }
}

export async function dockerCli(
  theBed: TestBed,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command("docker", {
    args,
    env: { DOCKER_HOST: theBed.dockerHost },
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const output = await child.output();
  return {
    code: output.code,
    stdout: new TextDecoder().decode(output.stdout),
    stderr: new TextDecoder().decode(output.stderr),
  };
}

/** Pseudo-random bytes (crypto.getRandomValues is limited to 64 KiB per call). */
export function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  }
  return out;
}

export async function sha256(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A TCP port on loopback nobody listens on right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
