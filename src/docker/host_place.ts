/**
 * Places the satellite's files straight into a local container's filesystem through
 * `/proc/<pid>/root`, instead of streaming them (~100 MB) through the engine's archive API: the
 * engine unpacks that archive in a helper process, ~180 ms of a mount here, where writing the
 * same bytes from the host takes ~40 ms. The engine still makes the private directory, and
 * still places everything when this cannot.
 *
 * Invariants:
 * - Writes go only into `dir`, a directory the engine made a moment ago with a random name, mode
 *   0700, owned by 0:0 as the host sees it (so no chown is ever needed, and an engine that maps
 *   users, whose root is not the host's, is left to the archive API). No component of its path
 *   may be a symlink (lstat). A process in the container that swaps one in afterwards can only
 *   send the writes to another directory of that random name, which only the container can
 *   hold: never onto the host's own files.
 * - Nothing is followed or overwritten: directories by mkdir, files by O_CREAT|O_EXCL.
 * - A failure is a reason, never an exception; what was written is removed, and the caller
 *   uploads through the API instead.
 *
 * @module
 */

import type { TarEntry } from "./tar.ts";
import { errorMessage } from "./errors.ts";

/** Where the host sees path `path` (absolute, inside the container) of process `pid`'s root. */
export function hostPathOf(pid: number, path: string): string {
  return `/proc/${pid}/root${path === "/" ? "" : path}`;
}

/**
 * Writes `entries` (relative to `dir`, each directory before what it holds) into directory
 * `dir` (absolute, inside the container; made by the engine) of the container whose first
 * process is `pid`. Undefined once all are written, else why not; what was written is then
 * removed (best effort).
 */
export async function placeOnHost(
  pid: number,
  dir: string,
  entries: readonly TarEntry[],
  onProgress?: (sent: number, total: number) => void,
): Promise<string | undefined> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return "no process id for the container";
  if (!dir.startsWith("/") || !isRelative(dir.slice(1))) return `not a place: '${dir}'`;
  const written: string[] = [];
  const total = entries.reduce((n, e) => n + (e.data?.length ?? e.source?.length ?? 0), 0);
  let sent = 0;
  try {
    let at = hostPathOf(pid, "/");
    for (const part of dir.split("/").filter((p) => p !== "")) {
      at = `${at}/${part}`;
      if (!(await Deno.lstat(at)).isDirectory) return `'${dir}' is not a directory`;
    }
    // Owned by 0:0 here too: an engine that maps users is left to the archive API.
    const why = await checkMade(at, { type: "directory", mode: 0o700 });
    if (why !== undefined) return why;
    for (const entry of entries) {
      if (!isRelative(entry.path)) return `bad entry '${entry.path}'`;
      if ((entry.uid ?? 0) !== 0 || (entry.gid ?? 0) !== 0) return "entries not owned by root";
      const path = `${at}/${entry.path}`;
      if (entry.type === "directory") {
        await Deno.mkdir(path, { mode: entry.mode });
        written.push(path);
      } else {
        using file = await Deno.open(path, { write: true, createNew: true, mode: entry.mode });
        written.push(path);
        if (entry.data !== undefined) {
          await writeAll(file, entry.data);
          onProgress?.(sent += entry.data.length, total);
        } else if (entry.source !== undefined) {
          let length = 0;
          // Each chunk is written before the next is asked for (it is valid only until then).
          for await (const chunk of entry.source.chunks()) {
            await writeAll(file, chunk);
            length += chunk.length;
            onProgress?.(sent += chunk.length, total);
          }
          if (length !== entry.source.length) {
            return `'${entry.path}' gave ${length} bytes, not ${entry.source.length}`;
          }
        }
      }
      const why = await checkMade(path, entry);
      if (why !== undefined) return why;
    }
    written.length = 0;
    return undefined;
  } catch (error) {
    return errorMessage(error);
  } finally {
    // Deepest first; remove() neither follows links nor empties a directory it did not make.
    for (const path of written.reverse()) await Deno.remove(path).catch(() => {});
  }
}

function isRelative(path: string): boolean {
  return path !== "" && !path.startsWith("/") &&
    !path.split("/").some((p) => p === "" || p === "." || p === "..");
}

/**
 * Why what was just made at `path` is not `want` (type, and mode: mkdir's and open's are masked
 * by the umask, and a chmod by path could follow a link swapped in), or undefined.
 */
async function checkMade(
  path: string,
  want: Pick<TarEntry, "type" | "mode">,
): Promise<string | undefined> {
  const info = await Deno.lstat(path);
  const type = want.type === "directory" ? info.isDirectory : info.isFile;
  if (!type || ((info.mode ?? 0) & 0o7777) !== want.mode || info.uid !== 0 || info.gid !== 0) {
    return `'${path}' was not made as asked (mode ${want.mode.toString(8)}, owner 0:0)`;
  }
  return undefined;
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await file.write(data.subarray(off));
}
