/**
 * The modules a mount needs only once the engine has started its satellite: the FUSE session,
 * the filesystem, the RPC client and its channel. `mod.ts` imports this module when the exec has
 * started, so that loading them (tens of milliseconds of this thread) overlaps the engine's start
 * of the process instead of delaying the first engine request.
 *
 * @module
 */

export { ContainerFs } from "../fs/mod.ts";
export { prepareMount } from "../fuse/mod.ts";
export { RpcClient } from "../protocol/mod.ts";
export { DIRECT_BULK_BYTES, openChannel } from "./direct.ts";
export { ReconnectingRpc } from "./reconnecting_rpc.ts";
export { warmUpWhenIdle } from "./warm_up.ts";
