/** The container filesystem: FUSE operations served by satellite RPCs. */

export { ContainerFs, type ContainerFsOptions, type Handle } from "./container_fs.ts";
export { statToAttr } from "./checks.ts";
export type { KernelCaches } from "./live.ts";
