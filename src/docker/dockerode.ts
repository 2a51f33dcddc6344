/**
 * dockerode, loaded only by the engine calls that use it (engine.ts imports this module on
 * first use): importing it and its dependencies takes about 100 ms.
 *
 * @module
 */

import "./unused_deps.ts"; // first: dockerode then loads without what it never needs here
import Docker from "dockerode";
import type { EngineConfig } from "./config.ts";

// dockerode has no bundled types; these are the parts we use.
export interface DockerodeModem {
  dial(options: Record<string, unknown>, callback: (error: unknown, data: unknown) => void): void;
  version?: string;
  sshOptions?: Record<string, unknown>;
}
export interface DockerodeContainer {
  inspect(): Promise<Record<string, unknown>>;
  infoArchive(options: { path: string }): Promise<{ resume(): void }>;
  putArchive(file: unknown, options: { path: string }): Promise<unknown>;
  getArchive(options: { path: string }): Promise<NodeDuplex>;
  exec(options: Record<string, unknown>): Promise<DockerodeExec>;
}
export interface DockerodeExec {
  id: string;
  start(options: Record<string, unknown>): Promise<NodeDuplex>;
  inspect(): Promise<Record<string, unknown>>;
}
export interface NodeDuplex {
  on(event: string, listener: (...args: unknown[]) => void): void;
  write(data: Uint8Array, callback?: (error?: unknown) => void): boolean;
  end(callback?: () => void): void;
  destroy(): void;
  pause(): void;
  resume(): void;
}
export interface Dockerode {
  modem: DockerodeModem;
  version(): Promise<Record<string, unknown>>;
  getContainer(id: string): DockerodeContainer;
  getImage(id: string): { inspect(): Promise<Record<string, unknown>> };
  getExec(id: string): DockerodeExec;
  getEvents(options: Record<string, unknown>): Promise<NodeDuplex>;
}

/** A dockerode client for `config` (an ssh endpoint through the forwarder at `forwarderSocket`). */
export function createDockerode(config: EngineConfig, forwarderSocket?: string): Dockerode {
  const endpoint = config.endpoint;
  // Every connection option is given explicitly so docker-modem's own reading of process.env
  // (DOCKER_HOST, DOCKER_CERT_PATH, …) cannot leak in.
  const base: Record<string, unknown> = {
    socketPath: undefined,
    host: undefined,
    port: undefined,
    protocol: undefined,
    ca: undefined,
    cert: undefined,
    key: undefined,
    pathPrefix: "/",
    timeout: undefined,
    version: undefined,
  };
  let options: Record<string, unknown>;
  switch (endpoint.kind) {
    case "unix":
      options = { ...base, socketPath: endpoint.path };
      break;
    case "tcp":
      options = endpoint.tls === undefined
        ? { ...base, host: endpoint.hostname, port: endpoint.port, protocol: "http" }
        : {
          ...base,
          host: endpoint.hostname,
          port: endpoint.port,
          protocol: "https",
          ca: endpoint.tls.ca,
          cert: endpoint.tls.cert,
          key: endpoint.tls.key,
        };
      break;
    case "ssh":
      options = { ...base, socketPath: forwarderSocket };
      break;
  }
  // deno-lint-ignore no-explicit-any
  return new (Docker as any)(options) as Dockerode;
}
