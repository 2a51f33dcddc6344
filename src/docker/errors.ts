/** Why an engine operation failed; callers map these to exit codes and messages. */
export type DockerErrorCode =
  | "config" // the engine address, context or TLS material is unusable
  | "unreachable" // no connection to the engine
  | "api" // the engine answered with an unexpected error
  | "not-found" // no such container
  | "not-running" // the container exists but is stopped or paused
  | "unsupported" // e.g. an API version, or a bundle for another architecture
  | "bundle" // the satellite bundle on this host is missing or malformed
  | "user" // the exec user does not exist in the container
  | "exec" // the runtime refused to start an exec'd process, or it ended at once
  | "protocol"; // the engine's byte stream was malformed

/** An error at the Docker edge. `message` reads like "Cannot …: reason" and holds no credentials. */
export class DockerError extends Error {
  readonly code: DockerErrorCode;
  /** the reason alone (the message after "Cannot …: "), for callers that rephrase the action */
  readonly reason: string;

  constructor(
    code: DockerErrorCode,
    message: string,
    options?: { cause?: unknown; reason?: string },
  ) {
    super(message, options);
    this.name = "DockerError";
    this.code = code;
    this.reason = options?.reason ?? message;
  }
}

/** The message of any thrown value, for wrapping. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
