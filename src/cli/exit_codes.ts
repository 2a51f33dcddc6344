/** Process exit codes of the dockerfuse CLI (documented in the README; scripts rely on them). */
export const ExitCode = {
  /** Success, or a clean unmount after SIGINT/SIGTERM. */
  Ok: 0,
  /** An unexpected internal error. */
  Internal: 1,
  /** Bad command line. */
  Usage: 2,
  /** The Docker engine cannot be reached or refused the request. */
  EngineUnreachable: 3,
  /** The container does not exist or is not running. */
  ContainerUnavailable: 4,
  /** The container's architecture has no satellite build. */
  UnsupportedArchitecture: 5,
  /** The mount itself failed (mountpoint, /dev/fuse, permissions). */
  MountFailed: 6,
  /** The satellite could not be uploaded or started, or failed its handshake. */
  SatelliteFailed: 7,
  /** The mount ended because the container, the satellite or the engine went away. */
  ConnectionLost: 8,
} as const;

/** One of the exit codes above. */
export type ExitCode = typeof ExitCode[keyof typeof ExitCode];

/** An error that ends the CLI with a given exit code and a one-line message. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  constructor(exitCode: ExitCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}
