/**
 * The engine as one filesystem: the tree's own read-only directories (`containers/`, `images/`,
 * `volumes/` and the subdirectories of repository names), and below each target's root its
 * files, served by a per-target filesystem attached on demand (a `ContainerFs`).
 *
 * Invariants:
 * - Identity: keys of the tree's own nodes and of targets' roots come from `layout.ts`; a node
 *   below a target's root has the key `<rootKey>|<inner key>`, so inodes of different targets
 *   never share a FUSE node. The inner filesystem sees a view of each node whose key, path,
 *   parent and name are relative to the target's root (the root's path is "/").
 * - Laziness: listing or stat-ing anything of the tree, a target's root included, only asks the
 *   engine for listings; only an operation below a root (or opening/listing the root) attaches.
 * - A target that left the listing (removed, stopped, untagged) is retired: new lookups answer
 *   ENOENT, nodes below it ENOENT, open files EIO; its attachment is detached.
 * - The tree's own directories, and everything of a read-only target, refuse changes with
 *   EROFS before anything is attached.
 *
 * @module
 */

import { O_ACCMODE, O_RDONLY, O_TRUNC, S_IFDIR } from "../linux/mod.ts";
import {
  type Attr,
  type AttrResult,
  type Created,
  type DirChanged,
  type DirEntry,
  EAGAIN,
  EINVAL,
  EIO,
  ENODATA,
  ENOENT,
  ENOSYS,
  type Entry,
  EROFS,
  Errno,
  EXDEV,
  type FileSystem,
  type FuseSession,
  type Logger,
  type Node,
  type Opened,
  type ReleaseInfo,
  type RequestContext,
  type Result,
  type SetAttrChanges,
  type StatFs,
  type WriteInfo,
} from "../fuse/mod.ts";
import { AttachBusyError, AttachManager, type Attachment, type Lease } from "./attach.ts";
import {
  containerDir,
  dirKey,
  imageDirs,
  readOnlyTarget,
  type Section,
  type Target,
  type TreeEntry,
  volumeDir,
} from "./layout.ts";

/** A container in a listing. */
export interface ContainerItem {
  id: string;
  name: string;
  running: boolean;
  created: number;
}

/** An image in a listing ("repo:tag" references). */
export interface ImageItem {
  id: string;
  tags: string[];
  created: number;
}

/** A volume in a listing. */
export interface VolumeItem {
  name: string;
  created: number;
}

/** What the tree needs of the engine (faked in unit tests). */
export interface TreeSource {
  listContainers(): Promise<ContainerItem[]>;
  listImages(): Promise<ImageItem[]>;
  listVolumes(): Promise<VolumeItem[]>;
  /** Starts serving a target's files; the attachment's `close()` undoes everything. */
  open(target: Target): Promise<Attachment<FileSystem>>;
}

/** Kernel cache invalidation (the FUSE session's, once mounted). */
export type Invalidator = Pick<FuseSession, "invalidateEntry" | "invalidateInode">;

/** Options of {@link TreeFs}. Times in seconds unless named ...Ms. */
export interface TreeFsOptions {
  /** Sections shown at the root. */
  sections: readonly Section[];
  /** Detach a target after this long without use. */
  idleMs: number;
  /** Targets attached at most at once. */
  maxAttached: number;
  /** Kernel cache timeout of the tree's own names and attributes. */
  treeTimeout: number;
  /** A listing is asked of the engine again when older than this (events also refresh it). */
  listTtlMs: number;
  logger: Logger;
  /** Timer for idle detaching (injected for tests). */
  schedule?: (fn: () => void, ms: number) => () => void;
  /** Clock for listing ages (ms; injected for tests). */
  now?: () => number;
}

/** An open file or directory of the tree. */
export type TreeHandle =
  | { kind: "dir"; entries: DirEntry[] }
  | { kind: "sub"; lease: Lease<FileSystem>; inner: unknown };

/** Where a node is. */
type Place =
  | { kind: "tree"; path: string }
  | { kind: "sub"; key: string; target: Target; root: boolean; view: View }
  | { kind: "gone" };

const DIR_MODE_TREE = S_IFDIR | 0o555;
/**
 * After a failed attach, accesses answer EIO at once for this long instead of deploying again
 * (a `ls -R` would otherwise try once per directory entry).
 */
const ATTACH_RETRY_MS = 5000;
const DIR_MODE_RW = S_IFDIR | 0o755;
const O_WRITE_MASK = O_ACCMODE;

/** A node as the inner filesystem sees it: relative to the target's root. */
class View implements Node {
  data: unknown = undefined;
  readonly #real: Node;
  readonly #rootKey: string;
  readonly #viewOf: (node: Node) => View;

  constructor(real: Node, rootKey: string, viewOf: (node: Node) => View) {
    this.#real = real;
    this.#rootKey = rootKey;
    this.#viewOf = viewOf;
  }
  get nodeId(): bigint {
    return this.#real.nodeId;
  }
  get #isRoot(): boolean {
    return this.#real.key === this.#rootKey;
  }
  get key(): string {
    return this.#isRoot ? "root" : this.#real.key.slice(this.#rootKey.length + 1);
  }
  get ino(): bigint {
    return this.#real.ino;
  }
  get parent(): Node | undefined {
    if (this.#isRoot) return undefined;
    const parent = this.#real.parent;
    return parent === undefined ? undefined : this.#viewOf(parent);
  }
  get name(): string {
    return this.#isRoot ? "" : this.#real.name;
  }
  get path(): string | undefined {
    const parts: string[] = [];
    let node: Node | undefined = this.#real;
    while (node !== undefined && node.key !== this.#rootKey) {
      if (node.parent === undefined || node.name === "") return undefined;
      parts.push(node.name);
      node = node.parent;
    }
    if (node === undefined) return undefined;
    return "/" + parts.reverse().join("/");
  }
}

/** The listing of one section: directories (path → entries) and when it was read. */
interface SectionState {
  dirs: Map<string, Map<string, TreeEntry>>;
  at: number;
  stale: boolean;
  loading?: Promise<Map<string, Map<string, TreeEntry>>>;
}

function isErrno(value: unknown): value is Errno {
  return value instanceof Errno;
}

/** See the module invariants. */
export class TreeFs implements FileSystem<TreeHandle> {
  readonly #source: TreeSource;
  readonly #options: TreeFsOptions;
  readonly #now: () => number;
  readonly #attach: AttachManager<FileSystem>;
  readonly #started = Math.floor(Date.now() / 1000);
  /** Live targets by root key. */
  readonly #targets = new Map<string, Target>();
  readonly #sections = new Map<Section, SectionState>();
  /** Kernel nodes of the tree's own directories by path, and of targets' roots by key. */
  readonly #dirNodes = new Map<string, Node>();
  readonly #rootNodes = new Map<string, Node>();
  readonly #inos = new Map<string, bigint>();
  #nextIno = 2n;
  #invalidator: Invalidator | undefined;
  /** Targets whose attaching failed → until when (ms) accesses answer EIO without a retry. */
  readonly #failed = new Map<string, number>();

  constructor(source: TreeSource, options: TreeFsOptions) {
    this.#source = source;
    this.#options = options;
    this.#now = options.now ?? (() => Date.now());
    this.#attach = new AttachManager<FileSystem>({
      idleMs: options.idleMs,
      max: options.maxAttached,
      schedule: options.schedule,
      onDetach: (key, reason) => {
        options.logger.info(`Detached ${this.#describe(key)} (${reason})`);
        if (reason === "idle" || reason === "lru" || reason === "lost") this.#dropRoot(key);
      },
    });
  }

  /** The attachments (for tests and reports). */
  get attachments(): AttachManager<FileSystem> {
    return this.#attach;
  }

  /** Set once mounted: the kernel caches to invalidate when the engine changes. */
  setInvalidator(invalidator: Invalidator): void {
    this.#invalidator = invalidator;
  }

  #describe(key: string): string {
    const t = this.#targets.get(key);
    if (t === undefined) return key.slice(0, 14);
    return t.kind === "container"
      ? `container '${t.name}'`
      : t.kind === "stopped"
      ? `stopped container '${t.name}'`
      : t.kind === "image"
      ? `image '${t.ref}'`
      : `volume '${t.name}'`;
  }

  /** Drops the kernel's name of a target's root, so its cached subtree goes too. */
  #dropRoot(key: string): void {
    const root = this.#rootNodes.get(key);
    if (root?.parent !== undefined && root.name !== "") {
      void this.#invalidator?.invalidateEntry(root.parent, root.name).catch(() => false);
    }
  }

  #ino(key: string): bigint {
    if (key === "") return 1n;
    let ino = this.#inos.get(key);
    if (ino === undefined) {
      ino = this.#nextIno++;
      this.#inos.set(key, ino);
    }
    return ino;
  }

  #viewOf = (node: Node): View => {
    if (node.data instanceof View) return node.data;
    const key = node.key;
    const bar = key.indexOf("|");
    const view = new View(node, bar < 0 ? key : key.slice(0, bar), this.#viewOf);
    node.data = view;
    return view;
  };

  #place(node: Node): Place {
    const key = node.key;
    if (key === "") {
      this.#dirNodes.set("/", node);
      return { kind: "tree", path: "/" };
    }
    if (key.startsWith("t:")) {
      const path = key.slice(2);
      this.#dirNodes.set(path, node);
      return { kind: "tree", path };
    }
    const bar = key.indexOf("|");
    const rootKey = bar < 0 ? key : key.slice(0, bar);
    const target = this.#targets.get(rootKey);
    if (target === undefined) return { kind: "gone" };
    if (bar < 0) this.#rootNodes.set(rootKey, node);
    return { kind: "sub", key: rootKey, target, root: bar < 0, view: this.#viewOf(node) };
  }

  // ---- listings ----

  async #load(section: Section): Promise<Map<string, Map<string, TreeEntry>>> {
    const state = this.#sections.get(section);
    if (state && !state.stale && this.#now() - state.at < this.#options.listTtlMs) {
      return state.dirs;
    }
    if (state?.loading) return await state.loading;
    const loading = this.#list(section).then((dirs) => {
      this.#apply(section, dirs);
      return dirs;
    });
    if (state) state.loading = loading;
    else {
      this.#sections.set(section, { dirs: new Map(), at: 0, stale: true, loading });
    }
    try {
      return await loading;
    } finally {
      const now = this.#sections.get(section);
      if (now) now.loading = undefined;
    }
  }

  async #list(section: Section): Promise<Map<string, Map<string, TreeEntry>>> {
    switch (section) {
      case "containers":
        return new Map([["/containers", containerDir(await this.#source.listContainers())]]);
      case "images":
        return imageDirs(await this.#source.listImages());
      case "volumes":
        return new Map([["/volumes", volumeDir(await this.#source.listVolumes())]]);
    }
  }

  /** Installs a new listing: registers targets, retires vanished ones, invalidates names. */
  #apply(section: Section, dirs: Map<string, Map<string, TreeEntry>>): void {
    const state = this.#sections.get(section)!;
    const old = state.dirs;
    const present = new Set<string>();
    for (const entries of dirs.values()) {
      for (const e of entries.values()) {
        if (e.kind !== "target") continue;
        present.add(e.key);
        this.#targets.set(e.key, e.target);
      }
    }
    for (const [path, entries] of old) {
      const fresh = dirs.get(path);
      for (const [name, e] of entries) {
        if (fresh?.get(name)?.key !== e.key) this.#invalidate(path, name);
        if (e.kind === "target" && !present.has(e.key) && this.#targets.has(e.key)) {
          this.#targets.delete(e.key);
          this.#options.logger.debug(`'${path}/${name}' went away`);
          void this.#attach.detach(e.key, "gone");
        }
      }
    }
    for (const [path, entries] of dirs) {
      const before = old.get(path);
      for (const name of entries.keys()) if (!before?.has(name)) this.#invalidate(path, name);
    }
    state.dirs = dirs;
    state.at = this.#now();
    state.stale = false;
  }

  #invalidate(path: string, name: string): void {
    const dir = this.#dirNodes.get(path);
    if (dir !== undefined) void this.#invalidator?.invalidateEntry(dir, name).catch(() => false);
  }

  /**
   * The engine changed something of `section`: re-list now if it was listed before (so vanished
   * names are invalidated at once), else only mark it stale.
   */
  async refresh(section: Section): Promise<void> {
    const state = this.#sections.get(section);
    if (state === undefined) return;
    state.stale = true;
    try {
      await this.#load(section);
    } catch (error) {
      this.#options.logger.warn(`Cannot refresh ${section}: ${(error as Error).message}`);
    }
  }

  /** Entries of a tree directory; undefined if there is no such directory. */
  async #entries(path: string): Promise<Map<string, TreeEntry> | undefined> {
    if (path === "/") {
      return new Map(
        this.#options.sections.map((s) => [s, { kind: "dir", key: dirKey(`/${s}`) }]),
      );
    }
    const section = path.split("/")[1] as Section;
    if (!this.#options.sections.includes(section)) return undefined;
    return (await this.#load(section)).get(path);
  }

  #treeAttr(key: string, mode: number, time: number): Attr {
    const t = { sec: time, nsec: 0 };
    return {
      ino: this.#ino(key),
      mode,
      nlink: 2,
      uid: 0,
      gid: 0,
      rdev: 0,
      size: 0,
      blocks: 0,
      atime: t,
      mtime: t,
      ctime: t,
    };
  }

  #targetAttr(key: string, target: Target): Attr {
    return this.#treeAttr(
      key,
      readOnlyTarget(target) ? DIR_MODE_TREE : DIR_MODE_RW,
      target.created,
    );
  }

  #entryOf(e: TreeEntry): Entry {
    const t = this.#options.treeTimeout;
    const attr = e.kind === "dir"
      ? this.#treeAttr(e.key, DIR_MODE_TREE, this.#started)
      : this.#targetAttr(e.key, e.target);
    return { attr, key: e.key, entryTimeout: t, attrTimeout: t, noXattrs: true };
  }

  // ---- delegation ----

  /** `entry` keyed in the tree; what a container tells of its directory stays with it. */
  #wrap(rootKey: string, entry: Entry): Entry {
    return { ...entry, key: `${rootKey}|${entry.key ?? String(entry.attr.ino)}`, dir: undefined };
  }

  async #lease(
    key: string,
    target: Target,
    forHandle: boolean,
  ): Promise<Lease<FileSystem> | Errno> {
    const failed = this.#failed.get(key);
    if (failed !== undefined && this.#now() < failed) return EIO;
    try {
      return await this.#attach.acquire(key, async () => {
        this.#options.logger.info(`Attaching ${this.#describe(key)}`);
        return await this.#source.open(target);
      }, forHandle);
    } catch (error) {
      if (error instanceof AttachBusyError) {
        this.#options.logger.warn(error.message);
        return EAGAIN;
      }
      this.#options.logger.error(
        `Cannot attach ${this.#describe(key)}: ${(error as Error).message}`,
      );
      this.#failed.set(key, this.#now() + ATTACH_RETRY_MS);
      return EIO;
    }
  }

  /** Runs `fn` on the inner filesystem of the node's target; EROFS/ENOENT as the invariants say. */
  async #on<T>(
    node: Node,
    mutates: boolean,
    fn: (fs: FileSystem, view: View) => Result<T>,
  ): Promise<T | Errno> {
    const place = this.#place(node);
    if (place.kind === "tree") return mutates ? EROFS : EINVAL;
    if (place.kind === "gone") return ENOENT;
    if (mutates && readOnlyTarget(place.target)) return EROFS;
    const lease = await this.#lease(place.key, place.target, false);
    if (isErrno(lease)) return lease;
    try {
      return await fn(lease.attachment.fs, place.view);
    } finally {
      lease.release();
    }
  }

  /** Like `#on` for (parent, name) operations; wraps entries into this tree's keys. */
  #onEntry(
    parent: Node,
    fn: (fs: FileSystem, view: View) => Result<Entry>,
  ): Promise<Entry | Errno> {
    const place = this.#place(parent);
    return this.#on(parent, true, fn).then((r) =>
      isErrno(r) ? r : place.kind !== "sub" ? { ...r, dir: undefined } : this.#wrap(place.key, r)
    );
  }

  /** Runs `fn` with an open handle's filesystem; EIO once its target went away. */
  async #onHandle<T>(
    handle: TreeHandle,
    fn: (fs: FileSystem, inner: unknown) => Result<T>,
  ): Promise<T | Errno> {
    if (handle.kind !== "sub") return EIO;
    if (!handle.lease.alive) return EIO;
    return await fn(handle.lease.attachment.fs, handle.inner);
  }

  // ---- FileSystem ----

  async lookup(ctx: RequestContext, parent: Node, name: string): Promise<Entry | Errno> {
    const place = this.#place(parent);
    if (place.kind === "tree") {
      let entries: Map<string, TreeEntry> | undefined;
      try {
        entries = await this.#entries(place.path);
      } catch (error) {
        this.#options.logger.error((error as Error).message);
        return EIO;
      }
      const e = entries?.get(name);
      return e === undefined ? ENOENT : this.#entryOf(e);
    }
    if (place.kind === "gone") return ENOENT;
    const r = await this.#on(
      parent,
      false,
      (fs, view) => (fs.lookup ? fs.lookup(ctx, view, name) : ENOSYS),
    );
    return isErrno(r) ? r : this.#wrap(place.key, r);
  }

  async getattr(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle | undefined,
  ): Promise<AttrResult | Errno> {
    const place = this.#place(node);
    const t = this.#options.treeTimeout;
    if (place.kind === "tree") {
      if (
        place.path !== "/" && (await this.#entries(place.path).catch(() => undefined)) === undefined
      ) {
        return ENOENT;
      }
      return { attr: this.#treeAttr(node.key, DIR_MODE_TREE, this.#started), timeout: t };
    }
    if (place.kind === "gone") return handle?.kind === "sub" ? EIO : ENOENT;
    if (place.root) return { attr: this.#targetAttr(place.key, place.target), timeout: t };
    if (handle?.kind === "sub") {
      return await this.#onHandle(
        handle,
        (fs, inner) => (fs.getattr ? fs.getattr(ctx, place.view, inner) : ENOSYS),
      );
    }
    return await this.#on(
      node,
      false,
      (fs, view) => (fs.getattr ? fs.getattr(ctx, view, undefined) : ENOSYS),
    );
  }

  async setattr(
    ctx: RequestContext,
    node: Node,
    changes: SetAttrChanges,
    handle: TreeHandle | undefined,
  ): Promise<AttrResult | Errno> {
    const place = this.#place(node);
    if (place.kind === "sub" && place.root) return EROFS;
    if (handle?.kind === "sub" && place.kind === "sub") {
      if (readOnlyTarget(place.target)) return EROFS;
      return await this.#onHandle(
        handle,
        (fs, inner) => (fs.setattr ? fs.setattr(ctx, place.view, changes, inner) : ENOSYS),
      );
    }
    return await this.#on(
      node,
      true,
      (fs, view) => (fs.setattr ? fs.setattr(ctx, view, changes, undefined) : ENOSYS),
    );
  }

  readlink(ctx: RequestContext, node: Node): Promise<string | Errno> {
    return this.#on(node, false, (fs, view) => (fs.readlink ? fs.readlink(ctx, view) : ENOSYS));
  }

  symlink(ctx: RequestContext, parent: Node, name: string, target: string): Promise<Entry | Errno> {
    return this.#onEntry(
      parent,
      (fs, view) => (fs.symlink ? fs.symlink(ctx, view, name, target) : ENOSYS),
    );
  }

  mknod(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    rdev: number,
    umask: number,
  ): Promise<Entry | Errno> {
    return this.#onEntry(
      parent,
      (fs, view) => (fs.mknod ? fs.mknod(ctx, view, name, mode, rdev, umask) : ENOSYS),
    );
  }

  mkdir(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    umask: number,
  ): Promise<Entry | Errno> {
    return this.#onEntry(
      parent,
      (fs, view) => (fs.mkdir ? fs.mkdir(ctx, view, name, mode, umask) : ENOSYS),
    );
  }

  unlink(ctx: RequestContext, parent: Node, name: string): Promise<void | Errno> {
    return this.#removing(parent, (fs, view) => fs.unlink ? fs.unlink(ctx, view, name) : ENOSYS);
  }

  rmdir(ctx: RequestContext, parent: Node, name: string): Promise<void | Errno> {
    return this.#removing(parent, (fs, view) => fs.rmdir ? fs.rmdir(ctx, view, name) : ENOSYS);
  }

  /** A removal in a container; what it tells of its directory stays with it (see #wrap). */
  async #removing(
    parent: Node,
    fn: (fs: FileSystem, view: View) => Result<void | DirChanged>,
  ): Promise<void | Errno> {
    const r = await this.#on(parent, true, fn);
    return isErrno(r) ? r : undefined;
  }

  rename(
    ctx: RequestContext,
    parent: Node,
    name: string,
    newParent: Node,
    newName: string,
    flags: number,
  ): Promise<void | Errno> {
    const from = this.#place(parent);
    const to = this.#place(newParent);
    if (from.kind === "sub" && to.kind === "sub" && from.key !== to.key) {
      return Promise.resolve(EXDEV);
    }
    if (to.kind !== "sub") return Promise.resolve(to.kind === "tree" ? EROFS : ENOENT);
    return this.#on(
      parent,
      true,
      (fs, view) => (fs.rename ? fs.rename(ctx, view, name, to.view, newName, flags) : ENOSYS),
    );
  }

  link(ctx: RequestContext, node: Node, newParent: Node, newName: string): Promise<Entry | Errno> {
    const from = this.#place(node);
    const to = this.#place(newParent);
    if (from.kind === "sub" && to.kind === "sub" && from.key !== to.key) {
      return Promise.resolve(EXDEV);
    }
    if (from.kind !== "sub") return Promise.resolve(from.kind === "tree" ? EROFS : ENOENT);
    return this.#onEntry(
      newParent,
      (fs, view) => (fs.link ? fs.link(ctx, from.view, view, newName) : ENOSYS),
    );
  }

  async #openSub(
    node: Node,
    mutates: boolean,
    fn: (fs: FileSystem, view: View) => Result<Opened<unknown>>,
  ): Promise<Opened<TreeHandle> | Errno> {
    const place = this.#place(node);
    if (place.kind === "gone") return ENOENT;
    if (place.kind === "tree") return EROFS;
    if (mutates && readOnlyTarget(place.target)) return EROFS;
    const lease = await this.#lease(place.key, place.target, true);
    if (isErrno(lease)) return lease;
    let r: Opened<unknown> | Errno | undefined;
    try {
      r = await fn(lease.attachment.fs, place.view);
    } catch (error) {
      lease.release();
      throw error;
    }
    if (r === undefined || isErrno(r)) {
      lease.release();
      return r ?? EIO;
    }
    // No writes answered ahead: the container may go at any moment, and a write to a file of a
    // removed container must fail itself (EIO), not only the close after it.
    return { ...r, writeAhead: undefined, handle: { kind: "sub", lease, inner: r.handle } };
  }

  open(ctx: RequestContext, node: Node, flags: number): Promise<Opened<TreeHandle> | Errno> {
    const writes = (flags & O_WRITE_MASK) !== O_RDONLY || (flags & O_TRUNC) !== 0;
    return this.#openSub(
      node,
      writes,
      (fs, view) => (fs.open ? fs.open(ctx, view, flags) : ENOSYS),
    );
  }

  async create(
    ctx: RequestContext,
    parent: Node,
    name: string,
    mode: number,
    flags: number,
    umask: number,
  ): Promise<Created<TreeHandle> | Errno> {
    const place = this.#place(parent);
    let entry: Entry | undefined;
    const r = await this.#openSub(parent, true, async (fs, view) => {
      if (fs.create === undefined) return ENOSYS;
      const c = await fs.create(ctx, view, name, mode, flags, umask);
      if (!isErrno(c)) entry = c.entry;
      return c;
    });
    if (isErrno(r) || entry === undefined || place.kind !== "sub") return isErrno(r) ? r : EIO;
    return { ...r, entry: this.#wrap(place.key, entry) };
  }

  read(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    offset: number,
    size: number,
  ): Promise<Uint8Array | Errno> {
    return this.#onHandle(
      handle,
      (fs, inner) => (fs.read ? fs.read(ctx, this.#viewOf(node), inner, offset, size) : ENOSYS),
    );
  }

  write(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    offset: number,
    data: Uint8Array,
    info: WriteInfo,
  ): Promise<number | Errno> {
    return this.#onHandle(
      handle,
      (
        fs,
        inner,
      ) => (fs.write ? fs.write(ctx, this.#viewOf(node), inner, offset, data, info) : ENOSYS),
    );
  }

  flush(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    lockOwner: bigint,
  ): Promise<void | Errno> {
    return this.#onHandle(
      handle,
      (fs, inner) =>
        fs.flush ? fs.flush(ctx, this.#viewOf(node), inner, lockOwner) : Promise.resolve(),
    );
  }

  async release(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    info: ReleaseInfo,
  ): Promise<void | Errno> {
    if (handle.kind !== "sub") return;
    try {
      if (handle.lease.alive) {
        await handle.lease.attachment.fs.release?.(ctx, this.#viewOf(node), handle.inner, info);
      }
    } finally {
      handle.lease.release();
    }
  }

  fsync(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    datasync: boolean,
  ): Promise<void | Errno> {
    return this.#onHandle(
      handle,
      (fs, inner) =>
        fs.fsync ? fs.fsync(ctx, this.#viewOf(node), inner, datasync) : Promise.resolve(),
    );
  }

  fallocate(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    offset: number,
    length: number,
    mode: number,
  ): Promise<void | Errno> {
    return this.#onHandle(
      handle,
      (
        fs,
        inner,
      ) => (fs.fallocate
        ? fs.fallocate(ctx, this.#viewOf(node), inner, offset, length, mode)
        : ENOSYS),
    );
  }

  lseek(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    offset: number,
    whence: number,
  ): Promise<number | Errno> {
    return this.#onHandle(
      handle,
      (fs, inner) => (fs.lseek ? fs.lseek(ctx, this.#viewOf(node), inner, offset, whence) : ENOSYS),
    );
  }

  copyFileRange(
    ctx: RequestContext,
    nodeIn: Node,
    handleIn: TreeHandle,
    offsetIn: number,
    nodeOut: Node,
    handleOut: TreeHandle,
    offsetOut: number,
    length: number,
    flags: number,
  ): Promise<number | Errno> {
    if (
      handleIn.kind !== "sub" || handleOut.kind !== "sub" ||
      handleIn.lease.attachment !== handleOut.lease.attachment
    ) {
      return Promise.resolve(EXDEV);
    }
    return this.#onHandle(handleIn, (fs, inner) => (fs.copyFileRange
      ? fs.copyFileRange(
        ctx,
        this.#viewOf(nodeIn),
        inner,
        offsetIn,
        this.#viewOf(nodeOut),
        handleOut.inner,
        offsetOut,
        length,
        flags,
      )
      : ENOSYS));
  }

  async opendir(
    ctx: RequestContext,
    node: Node,
    flags: number,
  ): Promise<Opened<TreeHandle> | Errno> {
    const place = this.#place(node);
    if (place.kind === "tree") {
      let entries: Map<string, TreeEntry> | undefined;
      try {
        entries = await this.#entries(place.path);
      } catch (error) {
        this.#options.logger.error((error as Error).message);
        return EIO;
      }
      if (entries === undefined) return ENOENT;
      const list: DirEntry[] = [
        { name: ".", ino: this.#ino(node.key), mode: S_IFDIR, next: 1 },
        { name: "..", ino: node.parent ? this.#ino(node.parent.key) : 1n, mode: S_IFDIR, next: 2 },
      ];
      for (const [name, e] of entries) {
        list.push({ name, ino: this.#ino(e.key), mode: S_IFDIR, next: list.length + 1 });
      }
      return { handle: { kind: "dir", entries: list } };
    }
    return await this.#openSub(
      node,
      false,
      (fs, view) => fs.opendir ? fs.opendir(ctx, view, flags) : { handle: undefined },
    );
  }

  async readdir(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    offset: number,
    plus: boolean,
  ): Promise<DirEntry[] | Errno> {
    if (handle.kind === "dir") return handle.entries.slice(offset);
    const place = this.#place(node);
    const key = place.kind === "sub" ? place.key : "";
    const r = await this.#onHandle(
      handle,
      (
        fs,
        inner,
      ) => (fs.readdir ? fs.readdir(ctx, this.#viewOf(node), inner, offset, plus) : ENOSYS),
    );
    if (isErrno(r)) return r;
    return r.map((e) => (e.entry === undefined ? e : { ...e, entry: this.#wrap(key, e.entry) }));
  }

  async releasedir(ctx: RequestContext, node: Node, handle: TreeHandle): Promise<void | Errno> {
    if (handle.kind !== "sub") return;
    try {
      if (handle.lease.alive) {
        await handle.lease.attachment.fs.releasedir?.(ctx, this.#viewOf(node), handle.inner);
      }
    } finally {
      handle.lease.release();
    }
  }

  fsyncdir(
    ctx: RequestContext,
    node: Node,
    handle: TreeHandle,
    datasync: boolean,
  ): Promise<void | Errno> {
    if (handle.kind === "dir") return Promise.resolve();
    return this.#onHandle(
      handle,
      (fs, inner) =>
        fs.fsyncdir ? fs.fsyncdir(ctx, this.#viewOf(node), inner, datasync) : Promise.resolve(),
    );
  }

  async statfs(ctx: RequestContext, node: Node): Promise<StatFs | Errno> {
    const place = this.#place(node);
    if (place.kind !== "sub" || place.root) {
      return {
        blocks: 0,
        bfree: 0,
        bavail: 0,
        files: 0,
        ffree: 0,
        bsize: 4096,
        namelen: 255,
        frsize: 4096,
      };
    }
    return await this.#on(node, false, (fs, view) => (fs.statfs ? fs.statfs(ctx, view) : ENOSYS));
  }

  setxattr(
    ctx: RequestContext,
    node: Node,
    name: string,
    value: Uint8Array,
    flags: number,
  ): Promise<void | Errno> {
    const place = this.#place(node);
    if (place.kind === "sub" && place.root) return Promise.resolve(EROFS);
    return this.#on(
      node,
      true,
      (fs, view) => (fs.setxattr ? fs.setxattr(ctx, view, name, value, flags) : ENOSYS),
    );
  }

  getxattr(ctx: RequestContext, node: Node, name: string): Promise<Uint8Array | Errno> {
    const place = this.#place(node);
    if (place.kind !== "sub" || place.root) return Promise.resolve(ENODATA);
    return this.#on(
      node,
      false,
      (fs, view) => (fs.getxattr ? fs.getxattr(ctx, view, name) : ENOSYS),
    );
  }

  listxattr(ctx: RequestContext, node: Node): Promise<string[] | Errno> {
    const place = this.#place(node);
    if (place.kind !== "sub" || place.root) return Promise.resolve([]);
    return this.#on(node, false, (fs, view) => (fs.listxattr ? fs.listxattr(ctx, view) : ENOSYS));
  }

  removexattr(ctx: RequestContext, node: Node, name: string): Promise<void | Errno> {
    const place = this.#place(node);
    if (place.kind === "sub" && place.root) return Promise.resolve(EROFS);
    return this.#on(
      node,
      true,
      (fs, view) => (fs.removexattr ? fs.removexattr(ctx, view, name) : ENOSYS),
    );
  }

  /** Detaches every target (the mount is ending). */
  async close(): Promise<void> {
    await this.#attach.closeAll();
  }
}
