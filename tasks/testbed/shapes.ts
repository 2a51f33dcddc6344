/**
 * Containers shaped like what users run: an image kind and the `docker run` options around it.
 * The e2e tests mount each one on every engine of the bed.
 *
 * @module
 */

import type { ImageKind } from "./images.ts";
import type { RealKind } from "./real_images.ts";

export interface ContainerShape {
  /** short name for test titles */
  readonly name: string;
  readonly kind: ImageKind | RealKind;
  /** `docker run` options */
  readonly runArgs: readonly string[];
  /** directory of the container the tests write into; absent: mounting must fail */
  readonly writable?: string;
  /** for a shape that cannot be mounted: what the error must say */
  readonly refusal?: RegExp;
}

/** Every tmpfs an engine may add to a read-only container, made noexec. */
const NOEXEC_TMPFS = ["/tmp", "/run", "/var/tmp"].flatMap((p) => ["--tmpfs", `${p}:noexec`]);

export const SHAPES: readonly ContainerShape[] = [
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
  { name: "--cap-drop ALL", kind: "scratch", runArgs: ["--cap-drop", "ALL"], writable: "/data" },
  {
    name: "no-new-privileges",
    kind: "nonroot",
    runArgs: ["--security-opt", "no-new-privileges"],
    writable: "/data",
  },
  { name: "--memory 64m", kind: "scratch", runArgs: ["--memory", "64m"], writable: "/data" },
  { name: "--pids-limit 32", kind: "scratch", runArgs: ["--pids-limit", "32"], writable: "/data" },
];
