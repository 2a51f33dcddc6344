/**
 * Persistent volume definitions of the plugin: one JSON file, replaced atomically (write a
 * temporary file in the same directory, fsync, rename), so a crash leaves either the old or the
 * new content, never a torn one.
 *
 * @module
 */

/** One volume as `docker volume create` defined it, plus who has it mounted. */
export interface VolumeRecord {
  name: string;
  /** Container name or id prefix whose filesystem the volume shows. */
  container: string;
  /** Directory inside the container that becomes the volume's root. */
  path: string;
  readOnly: boolean;
  /** RFC 3339 creation time. */
  createdAt: string;
  /** Caller IDs of `VolumeDriver.Mount` not yet matched by an `Unmount`. */
  mountIds: string[];
}

/** Where definitions live; a fake in unit tests. */
export interface VolumeStore {
  load(): Promise<VolumeRecord[]>;
  save(records: readonly VolumeRecord[]): Promise<void>;
}

const FORMAT_VERSION = 1;

/** Checks one parsed record; returns undefined for anything malformed. */
function parseRecord(value: unknown): VolumeRecord | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (
    typeof v.name !== "string" || typeof v.container !== "string" ||
    typeof v.path !== "string" || typeof v.readOnly !== "boolean" ||
    typeof v.createdAt !== "string" || !Array.isArray(v.mountIds) ||
    !v.mountIds.every((id) => typeof id === "string")
  ) {
    return undefined;
  }
  return {
    name: v.name,
    container: v.container,
    path: v.path,
    readOnly: v.readOnly,
    createdAt: v.createdAt,
    mountIds: [...v.mountIds as string[]],
  };
}

/** Parses the store file's text; never throws. */
export function parseStore(text: string): { records: VolumeRecord[] } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { error: `not JSON (${(error as Error).message})` };
  }
  if (typeof parsed !== "object" || parsed === null) return { error: "not an object" };
  const doc = parsed as { version?: unknown; volumes?: unknown };
  if (doc.version !== FORMAT_VERSION) return { error: `unknown version ${String(doc.version)}` };
  if (!Array.isArray(doc.volumes)) return { error: "no volumes list" };
  const records: VolumeRecord[] = [];
  for (const item of doc.volumes) {
    const record = parseRecord(item);
    if (!record) return { error: `malformed volume entry ${JSON.stringify(item)}` };
    records.push(record);
  }
  return { records };
}

/** A {@link VolumeStore} in a JSON file. */
export class JsonFileStore implements VolumeStore {
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
  }

  async load(): Promise<VolumeRecord[]> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.#file);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return [];
      throw new Error(`Cannot read '${this.#file}': ${(error as Error).message}`);
    }
    const result = parseStore(text);
    if ("error" in result) throw new Error(`Cannot read '${this.#file}': ${result.error}`);
    return result.records;
  }

  async save(records: readonly VolumeRecord[]): Promise<void> {
    const dir = this.#file.slice(0, this.#file.lastIndexOf("/")) || "/";
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const temp = `${this.#file}.${Deno.pid}.tmp`;
    const text = JSON.stringify({ version: FORMAT_VERSION, volumes: records }, null, 2) + "\n";
    await Deno.writeTextFile(temp, text, { mode: 0o600 });
    const file = await Deno.open(temp, { read: true });
    try {
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(temp, this.#file);
  }
}
