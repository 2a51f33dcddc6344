/** How to start the dockerfuse CLI from source: used for `--daemon`, the tasks and the tests. */

/** The CLI's entry module. */
export const CLI_MAIN: string = new URL("./main.ts", import.meta.url).pathname;

/**
 * V8 flags the client runs with. A small young generation: under many parallel 1 MiB requests
 * the default one grows to tens of MiB of garbage between scavenges (peak RSS 8 writers +
 * 8 readers: ~200 MiB default, ~145 MiB with 4 MiB semi-spaces, same throughput).
 */
export const CLIENT_V8_FLAGS = "--max-semi-space-size=4";

/** `deno` arguments that run the CLI from source with `args`. */
export function cliRunArgs(args: readonly string[]): string[] {
  return ["run", "-A", `--v8-flags=${CLIENT_V8_FLAGS}`, CLI_MAIN, ...args];
}
