// Command-line grammar of dockerfuse: subcommands, options, `-o` lists and the original Go tool's
// single-dash flags. Parsing yields a plain Invocation value; nothing here has side effects.

import {
  command,
  extendType,
  flag,
  multioption,
  number,
  oneOf,
  option,
  optional,
  positional,
  runSafely,
  string,
  subcommands,
} from "cmd-ts";
import type { Type } from "cmd-ts";
import {
  type ContainerMountOptions,
  MOUNT_DEFAULTS,
  type MountDefaults,
  mountOptions,
} from "../mount/options.ts";
import { ENGINE_DEFAULTS, type EngineMountOptions } from "../tree/options.ts";
import { DEPLOY_MODES, type DeployMode } from "../docker/deploy.ts";
import {
  DEFAULT_PLUGIN_SOCKET,
  DEFAULT_STATE_DIR,
  type VolumePluginOptions,
} from "../plugin/options.ts";

/** A parsed command line. */
export type Invocation =
  | {
    kind: "mount";
    options: ContainerMountOptions;
    /** Return once the mount answers, serving in the background. */
    daemon: boolean;
    logFormat: "text" | "json";
  }
  | {
    kind: "engine";
    options: EngineMountOptions;
    daemon: boolean;
    logFormat: "text" | "json";
  }
  | { kind: "unmount"; mountpoint: string }
  | { kind: "prune" }
  | { kind: "volume-plugin"; options: VolumePluginOptions }
  | { kind: "version"; json: boolean }
  | { kind: "help"; text: string; exitCode: number }
  | { kind: "usage-error"; text: string };

const seconds: Type<string, number> = extendType(number, {
  displayName: "seconds",
  from(value: number): Promise<number> {
    if (!Number.isFinite(value) || value < 0 || value > 86_400) {
      return Promise.reject(new Error(`expected seconds between 0 and 86400, got ${value}`));
    }
    return Promise.resolve(value);
  },
});

const containerPath: Type<string, string> = extendType(string, {
  displayName: "path",
  from(value: string): Promise<string> {
    if (!value.startsWith("/")) {
      return Promise.reject(
        new Error(`expected an absolute path inside the container, got '${value}'`),
      );
    }
    if (value.includes("\0")) return Promise.reject(new Error("the path contains a NUL byte"));
    return Promise.resolve(value);
  },
});

/** `-o` options without a value, and what each sets. */
const FLAG_OPTIONS: Readonly<Record<string, (o: ContainerMountOptions) => void>> = {
  ro: (o) => o.readOnly = true,
  rw: (o) => o.readOnly = false,
  allow_other: (o) => o.allowOther = true,
  nonempty: (o) => o.nonEmpty = true,
  debug: (o) => o.debug = true,
  writeback_cache: (o) => o.writebackCache = true,
  sync_writes: (o) => o.syncWrites = true,
  reconnect: (o) => o.reconnect = true,
  noreconnect: (o) => o.reconnect = false,
  follow: (o) => o.follow = true,
  watch: (o) => o.watch = true,
  no_watch: (o) => o.watch = false,
  direct: (o) => o.direct = true,
  no_direct: (o) => o.direct = false,
  acl: (o) => o.acl = true,
  noacl: (o) => o.acl = false,
  io_uring: (o) => o.ioUring = true,
  no_io_uring: (o) => o.ioUring = false,
};

/** `-o` options taking seconds, and the field each sets. */
const SECONDS_OPTIONS: Readonly<
  Record<
    string,
    | "attrTimeout"
    | "entryTimeout"
    | "negativeTimeout"
    | "requestTimeout"
    | "reconnectGrace"
    | "liveTimeout"
  >
> = {
  live_timeout: "liveTimeout",
  attr_timeout: "attrTimeout",
  entry_timeout: "entryTimeout",
  negative_timeout: "negativeTimeout",
  request_timeout: "requestTimeout",
  reconnect_grace: "reconnectGrace",
};

/** `-o` options taking a string: an error text for a bad value, or undefined once applied. */
const STRING_OPTIONS: Readonly<
  Record<string, (o: ContainerMountOptions, v: string) => string | undefined>
> = {
  path: (o, v) => v.startsWith("/") ? (o.path = v, undefined) : "-o path must be absolute",
  user: (o, v) => (o.user = v, undefined),
  /** Hidden (tests): caps the change feed's watches. */
  max_watches: (o, v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) return "-o max_watches needs a count";
    o.maxWatches = n;
    return undefined;
  },
  deploy: (o, v) =>
    (DEPLOY_MODES as readonly string[]).includes(v)
      ? (o.deploy = v as DeployMode, undefined)
      : `-o deploy must be one of ${DEPLOY_MODES.join(", ")}, got '${v}'`,
};

/** Applies one mount(8)-style `-o` list to the options; returns an error text or undefined. */
export function applyMountOptionList(
  options: ContainerMountOptions,
  list: string,
): string | undefined {
  for (const item of list.split(",")) {
    if (item === "") continue;
    const eq = item.indexOf("=");
    const key = eq < 0 ? item : item.slice(0, eq);
    const value = eq < 0 ? undefined : item.slice(eq + 1);
    const flag = FLAG_OPTIONS[key];
    const field = SECONDS_OPTIONS[key];
    const setString = STRING_OPTIONS[key];
    if (flag) {
      if (value !== undefined) return `-o ${key} takes no value`;
      flag(options);
    } else if (field) {
      const n = Number(value);
      if (value === undefined || value === "" || !Number.isFinite(n) || n < 0 || n > 86_400) {
        return `-o ${key} needs seconds between 0 and 86400, got '${value ?? ""}'`;
      }
      options[field] = n;
      // Given explicitly, the cache timeouts apply where the change feed vouches too.
      if (field === "attrTimeout" || field === "entryTimeout") options.liveTimeout = 0;
    } else if (setString) {
      if (value === undefined || value === "") return `-o ${key} needs a value (${key}=…)`;
      const problem = setString(options, value);
      if (problem) return problem;
    } else {
      const known = [
        ...Object.keys(FLAG_OPTIONS),
        ...[...Object.keys(STRING_OPTIONS), ...Object.keys(SECONDS_OPTIONS)].map((k) => `${k}=`),
      ];
      return `unknown mount option '${key}' (known: ${known.join(", ")})`;
    }
  }
  return undefined;
}

/** `--log-format text|json`, shared by the commands that log. */
function logFormatOption() {
  return option({
    type: oneOf(["text", "json"] as const),
    long: "log-format",
    defaultValue: () => "text" as const,
    defaultValueIsSerializable: true,
    description: "log lines as text or JSON",
  });
}

/** Help texts of the common mount options whose wording differs between the commands. */
interface CommonMountHelp {
  readOnly: string;
  entryTimeout: string;
  user: string;
  syncWrites: string;
}

/**
 * The options `mount` and `engine` share, spread into each command's `args` (their order is the
 * order of the help output).
 */
function commonMountArgs(help: CommonMountHelp) {
  return {
    readOnly: flag({ long: "read-only", short: "r", description: help.readOnly }),
    allowOther: flag({
      long: "allow-other",
      description: "let other local users access the mount",
    }),
    daemon: flag({
      long: "daemon",
      short: "d",
      description: "return once the mount answers, serve in the background",
    }),
    debug: flag({ long: "debug", description: "log every FUSE request/reply and RPC" }),
    logFormat: logFormatOption(),
    // Optional: given explicitly, they apply where the change feed vouches too.
    attrTimeout: option({
      type: optional(seconds),
      long: "attr-timeout",
      description: `seconds the kernel caches attributes [default: ${MOUNT_DEFAULTS.attrTimeout}]`,
    }),
    entryTimeout: option({
      type: optional(seconds),
      long: "entry-timeout",
      description: `${help.entryTimeout} [default: ${MOUNT_DEFAULTS.entryTimeout}]`,
    }),
    requestTimeout: option({
      type: seconds,
      long: "request-timeout",
      defaultValue: () => MOUNT_DEFAULTS.requestTimeout,
      defaultValueIsSerializable: true,
      description: "seconds before an unanswered request fails with EIO (0: never)",
    }),
    user: option({
      type: string,
      long: "user",
      short: "u",
      defaultValue: () => MOUNT_DEFAULTS.user,
      defaultValueIsSerializable: true,
      description: help.user,
    }),
    nonEmpty: flag({ long: "nonempty", description: "allow mounting over a non-empty directory" }),
    writebackCache: flag({
      long: "writeback-cache",
      description: "kernel writeback cache for writes (see README)",
    }),
    syncWrites: flag({ long: "sync-writes", description: help.syncWrites }),
    ioUring: flag({
      long: "io-uring",
      description: "serve the kernel through one io_uring ring per CPU (Linux 6.14+; as root " +
        "switches fuse.enable_uring on; see README)",
    }),
  };
}

/**
 * `-o`/`--options`, shared by `mount` and `engine`; kept out of `commonMountArgs` so it stays
 * last in each command's help.
 */
function optionListArg(example: string) {
  return multioption({
    type: {
      from: (values: string[]) => Promise.resolve(values),
      defaultValue: () => [] as string[],
    },
    long: "options",
    short: "o",
    description: `mount(8)-style comma-separated options, e.g. -o ${example}`,
  });
}

/** The parsed values of `commonMountArgs` and `optionListArg`. */
interface CommonMountValues {
  readOnly: boolean;
  allowOther: boolean;
  debug: boolean;
  attrTimeout: number | undefined;
  entryTimeout: number | undefined;
  requestTimeout: number;
  user: string;
  nonEmpty: boolean;
  writebackCache: boolean;
  syncWrites: boolean;
  ioUring: boolean;
  o: string[];
}

/**
 * Builds the mount options from the common options, the command's own `changes` and then the
 * `-o` lists; returns an error text for a bad `-o` list.
 */
function commonMountOptions(
  container: string,
  mountpoint: string,
  a: CommonMountValues,
  changes: Partial<MountDefaults>,
): ContainerMountOptions | string {
  const options = mountOptions(container, mountpoint, {
    readOnly: a.readOnly,
    allowOther: a.allowOther,
    debug: a.debug,
    attrTimeout: a.attrTimeout ?? MOUNT_DEFAULTS.attrTimeout,
    entryTimeout: a.entryTimeout ?? MOUNT_DEFAULTS.entryTimeout,
    // No flag of its own: names and their absence alike.
    negativeTimeout: a.entryTimeout ?? MOUNT_DEFAULTS.negativeTimeout,
    ...(a.attrTimeout !== undefined || a.entryTimeout !== undefined ? { liveTimeout: 0 } : {}),
    requestTimeout: a.requestTimeout,
    user: a.user,
    nonEmpty: a.nonEmpty,
    writebackCache: a.writebackCache,
    syncWrites: a.syncWrites,
    ioUring: a.ioUring,
    ...changes,
  });
  for (const list of a.o) {
    const problem = applyMountOptionList(options, list);
    if (problem) return problem;
  }
  return options;
}

const mountCommand = command({
  name: "mount",
  description: "Mount the filesystem of a running container on a local directory. " +
    "Runs in the foreground until Ctrl-C (or SIGTERM), then unmounts.",
  examples: [
    { description: "Mount container 'web' on ./web", command: "dockerfuse mount web ./web" },
    {
      description: "Mount only /var/log of 'web', read-only, in the background",
      command: "dockerfuse mount --path /var/log --read-only --daemon web ./logs",
    },
    {
      description: "The same with mount(8)-style options",
      command: "dockerfuse mount -o ro,path=/var/log,attr_timeout=5 web ./logs",
    },
  ],
  args: {
    container: positional({
      type: string,
      displayName: "container",
      description: "name or id prefix",
    }),
    mountpoint: positional({
      type: string,
      displayName: "mountpoint",
      description: "local directory",
    }),
    path: option({
      type: containerPath,
      long: "path",
      short: "p",
      defaultValue: () => MOUNT_DEFAULTS.path,
      defaultValueIsSerializable: true,
      description: "directory inside the container to mount",
    }),
    ...commonMountArgs({
      readOnly: "mount read-only (writes fail with EROFS)",
      entryTimeout: "seconds the kernel caches names (and their absence)",
      user: "user the satellite runs as inside the container: name or uid[:gid]",
      syncWrites: "answer each write once the container has it: write errors show at once, " +
        "bulk writes are slower (see README)",
    }),
    deploy: option({
      type: oneOf(DEPLOY_MODES),
      long: "deploy",
      defaultValue: (): DeployMode => MOUNT_DEFAULTS.deploy,
      defaultValueIsSerializable: true,
      description: "how the satellite reaches the container: upload (into it), sidecar " +
        "(a helper container beside it, nothing written into it) or auto (upload where it works)",
    }),
    noReconnect: flag({
      long: "no-reconnect",
      description: "end the mount (exit 8) when the satellite, the container or the engine " +
        "connection goes away, instead of waiting for it and reconnecting",
    }),
    reconnectGrace: option({
      type: seconds,
      long: "reconnect-grace",
      defaultValue: () => MOUNT_DEFAULTS.reconnectGrace,
      defaultValueIsSerializable: true,
      description: "seconds a request made while reconnecting waits before failing with EIO",
    }),
    noWatch: flag({
      long: "no-watch",
      description: "no change feed: changes made inside the container show after the cache " +
        "timeouts (--attr-timeout, --entry-timeout) instead of at once",
    }),
    follow: flag({
      long: "follow",
      description: "when the container is removed, attach to the next one of the same name " +
        "(docker compose recreating it)",
    }),
    o: optionListArg("ro,allow_other,path=/srv"),
  },
  handler: (a): Invocation => {
    const options = commonMountOptions(a.container, a.mountpoint, a, {
      path: a.path,
      deploy: a.deploy,
      reconnect: !a.noReconnect,
      reconnectGrace: a.reconnectGrace,
      follow: a.follow,
      watch: !a.noWatch,
    });
    if (typeof options === "string") return { kind: "usage-error", text: options };
    if (options.container === "") {
      return { kind: "usage-error", text: "the container name is empty" };
    }
    return { kind: "mount", options, daemon: a.daemon, logFormat: a.logFormat };
  },
});

const positiveInteger: Type<string, number> = extendType(number, {
  displayName: "count",
  from(value: number): Promise<number> {
    if (!Number.isInteger(value) || value < 1 || value > 1000) {
      return Promise.reject(new Error(`expected a whole number between 1 and 1000, got ${value}`));
    }
    return Promise.resolve(value);
  },
});

const engineCommand = command({
  name: "engine",
  description: "Mount the whole engine on a local directory: containers/<name> (running " +
    "containers, read-write) and images/<repo>:<tag> (read-only). A satellite is started on " +
    "the first access below a directory and stopped after an idle period.",
  examples: [
    { description: "Mount the engine on ~/docker", command: "dockerfuse engine ~/docker" },
    {
      description: "At most 4 satellites at once, detached after 30 s idle",
      command: "dockerfuse engine --max-attached 4 --idle-timeout 30 ~/docker",
    },
  ],
  args: {
    mountpoint: positional({
      type: string,
      displayName: "mountpoint",
      description: "local directory",
    }),
    idleTimeout: option({
      type: seconds,
      long: "idle-timeout",
      defaultValue: () => ENGINE_DEFAULTS.idleTimeout,
      defaultValueIsSerializable: true,
      description: "seconds without use before a container's or image's satellite is stopped",
    }),
    maxAttached: option({
      type: positiveInteger,
      long: "max-attached",
      defaultValue: () => ENGINE_DEFAULTS.maxAttached,
      defaultValueIsSerializable: true,
      description: "satellites running at most at once (the least recently used idle one goes)",
    }),
    ...commonMountArgs({
      readOnly: "everything read-only",
      entryTimeout: "seconds the kernel caches names (the tree's own: at most 0.5)",
      user: "user the satellites run as inside containers",
      syncWrites: "answer each write once the container has it (see README)",
    }),
    o: optionListArg("ro,allow_other"),
  },
  handler: (a): Invocation => {
    const base = commonMountOptions("engine", a.mountpoint, a, {});
    if (typeof base === "string") return { kind: "usage-error", text: base };
    if (base.path !== MOUNT_DEFAULTS.path) {
      return { kind: "usage-error", text: "-o path does not apply to an engine mount" };
    }
    const { container: _container, path: _path, ...rest } = base;
    return {
      kind: "engine",
      options: { ...rest, idleTimeout: a.idleTimeout, maxAttached: a.maxAttached },
      daemon: a.daemon,
      logFormat: a.logFormat,
    };
  },
});

const unmountCommand = command({
  name: "unmount",
  aliases: ["umount"],
  description:
    "Unmount a dockerfuse mount (lazily if it is busy); also cleans a stale mount left " +
    "by a crashed process.",
  examples: [{ description: "Unmount ./web", command: "dockerfuse unmount ./web" }],
  args: { mountpoint: positional({ type: string, displayName: "mountpoint" }) },
  handler: (a): Invocation => ({ kind: "unmount", mountpoint: a.mountpoint }),
});

const volumePluginCommand = command({
  name: "volume-plugin",
  description: "Serve a Docker volume plugin whose volumes are the filesystems of running " +
    "containers (until SIGTERM, which unmounts everything and removes the socket).",
  examples: [
    { description: "Start the plugin (as root)", command: "dockerfuse volume-plugin" },
    {
      description: "Then, elsewhere: a volume showing container 'web'",
      command: "docker volume create -d dockerfuse -o container=web webfs",
    },
  ],
  args: {
    socket: option({
      type: string,
      long: "socket",
      defaultValue: () => DEFAULT_PLUGIN_SOCKET,
      defaultValueIsSerializable: true,
      description: "unix socket dockerd discovers (its file name is the driver name)",
    }),
    stateDir: option({
      type: string,
      long: "state-dir",
      defaultValue: () => DEFAULT_STATE_DIR,
      defaultValueIsSerializable: true,
      description: "volume definitions and mountpoints",
    }),
    debug: flag({ long: "debug", description: "log every plugin call, FUSE request and RPC" }),
    logFormat: logFormatOption(),
  },
  handler: (a): Invocation => ({
    kind: "volume-plugin",
    options: { socket: a.socket, stateDir: a.stateDir, debug: a.debug, logFormat: a.logFormat },
  }),
});

const pruneCommand = command({
  name: "prune",
  description: "Remove dockerfuse's reusable satellite images (made by sidecar mounts) from " +
    "the engine; a later sidecar mount makes its image again.",
  args: {},
  handler: (): Invocation => ({ kind: "prune" }),
});

const versionCommand = command({
  name: "version",
  description: "Print the version of dockerfuse and of its protocol.",
  args: { json: flag({ long: "json", description: "print as JSON" }) },
  handler: (a): Invocation => ({ kind: "version", json: a.json }),
});

const cli = subcommands({
  name: "dockerfuse",
  description: "Mount the filesystem of a running Docker container through FUSE, with nothing " +
    "installed in the container beforehand.",
  examples: [
    { description: "Mount container 'web' until Ctrl-C", command: "dockerfuse mount web ./web" },
    {
      description: "The original tool's spelling still works",
      command: "dockerfuse -id web -mount ./web",
    },
    { description: "Unmount", command: "dockerfuse unmount ./web" },
  ],
  cmds: {
    mount: mountCommand,
    engine: engineCommand,
    unmount: unmountCommand,
    umount: unmountCommand,
    "volume-plugin": volumePluginCommand,
    prune: pruneCommand,
    version: versionCommand,
  },
});

const LEGACY_VALUE_FLAGS: Readonly<Record<string, string>> = {
  id: "container",
  i: "container",
  mount: "mountpoint",
  m: "mountpoint",
  path: "--path",
  p: "--path",
};
const LEGACY_BOOL_FLAGS: Readonly<Record<string, string[]>> = {
  d: ["--daemon"],
  daemonize: ["--daemon"],
  debug: ["--debug"],
  json: ["--log-format", "json"],
  j: ["--log-format", "json"],
};

/**
 * Rewrites the original Go tool's flags (`-id web -mount ./web -d -debug -json -v`) into the
 * subcommand form, or returns undefined when the arguments are not in that style.
 */
export function translateLegacyArgs(args: readonly string[]): string[] | undefined {
  const first = args[0];
  if (first === undefined || !/^--?[a-z]+(=.*)?$/.test(first)) return undefined;
  const name = first.replace(/^--?/, "").replace(/=.*$/, "");
  if (
    !(name in LEGACY_VALUE_FLAGS) && !(name in LEGACY_BOOL_FLAGS) && name !== "v" &&
    name !== "version"
  ) {
    return undefined;
  }
  let container: string | undefined;
  let mountpoint: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const match = /^--?([a-z]+)(?:=(.*))?$/.exec(arg);
    if (!match) return undefined;
    const [, flagName, inline] = match as unknown as [string, string, string | undefined];
    if (flagName === "v" || flagName === "version") return ["version"];
    const target = LEGACY_VALUE_FLAGS[flagName];
    if (target) {
      const value = inline ?? args[++i];
      if (value === undefined) return undefined;
      if (target === "container") container = value;
      else if (target === "mountpoint") mountpoint = value;
      else rest.push(target, value);
      continue;
    }
    const bool = LEGACY_BOOL_FLAGS[flagName];
    if (!bool || inline !== undefined && inline !== "true") return undefined;
    rest.push(...bool);
  }
  if (container === undefined || mountpoint === undefined) return undefined;
  return ["mount", ...rest, container, mountpoint];
}

/** Parses a command line into an Invocation; never exits the process. */
export async function parseArgs(args: readonly string[]): Promise<Invocation> {
  const argv = translateLegacyArgs(args) ?? [...args];
  const result = await runSafely(cli, argv);
  if (result._tag === "ok") {
    const value = result.value as { value?: Invocation } | Invocation;
    return "command" in value && "value" in value
      ? (value.value as Invocation)
      : value as Invocation;
  }
  const { exitCode, message, into } = result.error.config;
  if (into === "stdout") return { kind: "help", text: message, exitCode };
  return { kind: "usage-error", text: message };
}
