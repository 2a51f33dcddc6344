/**
 * Containers shaped like what users run: an image kind and the `docker run` options around it.
 * The e2e tests mount each one on every engine of the bed.
 *
 * @module
 */

import type { ImageKind } from "./images.ts";
import type { RealKind } from "./real_images.ts";

export type EngineName = "docker" | "podman";

export interface ContainerShape {
  /** short name for test titles */
  readonly name: string;
  readonly kind: ImageKind | RealKind;
  /** `docker run` options */
  readonly runArgs: readonly string[];
  /** directory of the container the tests write into; absent: mounting must fail */
  readonly writable?: string;
  /** engines to run it on (default: all) */
  readonly engines?: readonly EngineName[];
  /** for a shape that cannot be mounted: what the error must say */
  readonly refusal?: RegExp;
  /**
   * Engines on which the satellite's exec has no capabilities there (`--cap-drop ALL`; on
   * Docker also `no-new-privileges` with a non-root USER, where even uid 0 gets none): what
   * needs them fails with EPERM, as it would for any process of the container.
   */
  readonly withoutCapabilities?: readonly EngineName[];
  /**
   * Engines on which the satellite cannot remove its own (emptied) upload directory: Podman
   * makes "/" mode 0555, and without CAP_DAC_OVERRIDE even its owner cannot remove entries
   * there; with no /tmp to go to instead (FROM scratch), one empty directory is left.
   */
  readonly leavesEmptyDir?: readonly EngineName[];
}

/** POSIX table cases the engine's default capability set refuses with EPERM. */
export const ENGINE_REFUSED_CASES: Readonly<Record<EngineName, readonly string[]>> = {
  docker: [],
  // Podman 4's default capabilities have no CAP_MKNOD: device nodes are refused.
  podman: ["mkfifo and mknod"],
};

/**
 * Cases of the POSIX table (tests/fuse/posix_table.ts) that need capabilities: chown
 * (CAP_CHOWN), device nodes (CAP_MKNOD), files owned by the caller (CAP_CHOWN/CAP_FOWNER), and
 * removing one's own file from a sticky directory the satellite does not own (CAP_FOWNER).
 */
export const CAPABILITY_CASES: readonly string[] = [
  "chown changes owner and group",
  "mkfifo and mknod",
  "new files belong to the caller; setgid directories pass their group",
  "sticky directory: only owners delete",
];

/** Every tmpfs an engine may add to a read-only container, made noexec. */
const NOEXEC_TMPFS = ["/tmp", "/run", "/var/tmp"].flatMap((p) => ["--tmpfs", `${p}:noexec`]);

export const SHAPES: readonly ContainerShape[] = [
  // The classic images as they are: on Docker, tests/e2e/posix_test.ts runs them already.
  ...(["glibc", "musl", "static", "arm64"] as const).map((kind): ContainerShape => ({
    name: `${kind} image`,
    kind,
    runArgs: [],
    writable: "/data",
    engines: ["podman"],
  })),
  { name: "FROM scratch (no /etc, no /tmp)", kind: "scratch", runArgs: [], writable: "/data" },
  { name: "non-root USER", kind: "nonroot", runArgs: [], writable: "/data" },
  { name: "arm64 without /etc/passwd", kind: "arm64-bare", runArgs: [], writable: "/data" },
  {
    name: "read-only root with a writable volume",
    kind: "scratch",
    runArgs: ["--read-only", "-v", "/vol"],
    writable: "/vol",
  },
  {
    name: "read-only root with only noexec tmpfs",
    kind: "scratch",
    runArgs: ["--read-only", ...NOEXEC_TMPFS],
    refusal: /read-only.*noexec tmpfs mounts \(.*\/tmp.*writable volume/s,
  },
  {
    // Podman uploads into tmpfs mounts (it also adds exec tmpfs /tmp, /run, /var/tmp itself);
    // Docker (20.10) extracts archives outside the container's mounts, but the client writes
    // the satellite in from the host (src/docker/host_place.ts), which sees them.
    name: "read-only root with an exec tmpfs",
    kind: "scratch",
    runArgs: ["--read-only", "--tmpfs", "/x:exec"],
    writable: "/x",
  },
  {
    name: "--cap-drop ALL",
    kind: "scratch",
    runArgs: ["--cap-drop", "ALL"],
    writable: "/data",
    withoutCapabilities: ["docker", "podman"],
    leavesEmptyDir: ["podman"],
  },
  {
    // With a /tmp, the satellite goes there on Podman and leaves nothing (see leavesEmptyDir)
    name: "--cap-drop ALL, image with /tmp",
    kind: "nonroot",
    runArgs: ["--cap-drop", "ALL"],
    writable: "/tmp",
    withoutCapabilities: ["docker", "podman"],
  },
  {
    // uid 0 without capabilities: it writes where root owns or anyone may write (/tmp here)
    name: "no-new-privileges with a non-root USER",
    kind: "nonroot",
    runArgs: ["--security-opt", "no-new-privileges"],
    writable: "/tmp",
    withoutCapabilities: ["docker"],
  },
  { name: "--memory 64m", kind: "scratch", runArgs: ["--memory", "64m"], writable: "/data" },
  { name: "--pids-limit 32", kind: "scratch", runArgs: ["--pids-limit", "32"], writable: "/data" },
];
