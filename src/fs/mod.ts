/** The container filesystem: FUSE operations served by satellite RPCs. */

export { ContainerFs, type ContainerFsOptions, type Handle, statToAttr } from "./container_fs.ts";
