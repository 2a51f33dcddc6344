/**
 * The tree's own directories, computed from engine listings (values only).
 *
 * Layout: `containers/<name>`, `images/<repo>:<tag>` where each "/" of the repository makes a
 * subdirectory (`images/ghcr.io/org/app:1.2`), `volumes/<name>`.
 *
 * Invariants:
 * - A directory's entries have distinct names; a leaf of `images/` always holds a ":", so it never
 *   collides with a subdirectory made of a repository part (which never holds one, except a
 *   registry port like "host:5000", kept as a directory since a leaf needs a tag after it).
 * - Identity keys: a directory of the tree "t:<path>", a running container "c:<id>", a stopped
 *   one "s:<id>" (so a start or stop makes a new directory inode), an image tag
 *   "i:<id>:<repo:tag>" (per tag: two tags of one image are two directories, never aliases of one
 *   directory inode, which the kernel forbids), a volume "v:<name>".
 *
 * @module
 */

/** Something the tree serves the files of. */
export type Target =
  | { kind: "container"; id: string; name: string; created: number }
  /** A stopped (or paused) container: served read-only from a committed snapshot. */
  | { kind: "stopped"; id: string; name: string; created: number }
  | { kind: "image"; id: string; ref: string; created: number }
  | { kind: "volume"; name: string; created: number };

/** An entry of a tree directory: a subdirectory of the tree, or a target's root. */
export type TreeEntry = { kind: "dir"; key: string } | {
  kind: "target";
  key: string;
  target: Target;
};

/** Top-level sections, in listing order. */
export const SECTIONS = ["containers", "images", "volumes"] as const;
export type Section = (typeof SECTIONS)[number];

/** The root key of a target's subtree. */
export function targetKey(target: Target): string {
  switch (target.kind) {
    case "container":
      return `c:${target.id}`;
    case "stopped":
      return `s:${target.id}`;
    case "image":
      return `i:${target.id}:${target.ref}`;
    case "volume":
      return `v:${target.name}`;
  }
}

/** The key of a tree directory at `path` ("/containers", "/images/ghcr.io"). */
export function dirKey(path: string): string {
  return path === "/" ? "" : `t:${path}`;
}

/** Whether a name may be a directory entry (names from the engine are not trusted). */
function usableName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") &&
    !name.includes("\0") && new TextEncoder().encode(name).length <= 255;
}

/** Directories (path → entries) of `/images`, from "repo:tag" references. */
export function imageDirs(
  images: readonly { id: string; tags: readonly string[]; created: number }[],
): Map<string, Map<string, TreeEntry>> {
  const dirs = new Map<string, Map<string, TreeEntry>>([["/images", new Map()]]);
  for (const image of images) {
    for (const ref of image.tags) {
      const colon = ref.lastIndexOf(":");
      if (colon <= 0 || colon === ref.length - 1 || ref.slice(colon).includes("/")) continue; // no tag
      const parts = ref.split("/");
      const leaf = parts.pop()!;
      if (!usableName(leaf) || !parts.every(usableName)) continue;
      let path = "/images";
      let ok = true;
      for (const part of parts) {
        const child = `${path}/${part}`;
        const entries = dirs.get(path)!;
        const existing = entries.get(part);
        if (existing !== undefined && existing.kind !== "dir") {
          ok = false;
          break;
        }
        entries.set(part, { kind: "dir", key: dirKey(child) });
        if (!dirs.has(child)) dirs.set(child, new Map());
        path = child;
      }
      if (!ok || dirs.get(path)!.get(leaf)?.kind === "dir") continue;
      const target: Target = { kind: "image", id: image.id, ref, created: image.created };
      dirs.get(path)!.set(leaf, { kind: "target", key: targetKey(target), target });
    }
  }
  return dirs;
}

/** Whether a target's files are served read-only. */
export function readOnlyTarget(target: Target): boolean {
  return target.kind === "image" || target.kind === "stopped";
}

/** `/containers` entries from a listing (running and stopped containers). */
export function containerDir(
  containers: readonly { id: string; name: string; running: boolean; created: number }[],
): Map<string, TreeEntry> {
  const entries = new Map<string, TreeEntry>();
  for (const c of containers) {
    if (!usableName(c.name)) continue;
    const target: Target = {
      kind: c.running ? "container" : "stopped",
      id: c.id,
      name: c.name,
      created: c.created,
    };
    entries.set(c.name, { kind: "target", key: targetKey(target), target });
  }
  return entries;
}

/** `/volumes` entries from a listing. */
export function volumeDir(
  volumes: readonly { name: string; created: number }[],
): Map<string, TreeEntry> {
  const entries = new Map<string, TreeEntry>();
  for (const v of volumes) {
    if (!usableName(v.name)) continue;
    const target: Target = { kind: "volume", name: v.name, created: v.created };
    entries.set(v.name, { kind: "target", key: targetKey(target), target });
  }
  return entries;
}
