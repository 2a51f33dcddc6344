/**
 * The protocol between the dockerfuse client and its satellite: the method table, framing,
 * the typed client and the satellite-side dispatcher. A leaf module: it imports nothing else
 * from the project.
 *
 * ```ts
 * const client = new RpcClient(child.stdout, child.stdin, { expectedBuildId });
 * const hello = await client.ready;
 * const r = await client.call.lstat({ path: "etc/hostname" });
 * if (!r.ok) return r.errno; // Linux errno number, e.g. 2
 * console.log(r.value.size); // bigint
 * ```
 *
 * @module
 */

export * from "./errno.ts";
export * from "./methods.ts";
export {
  type DirEntry,
  type EntryList,
  type EntryName,
  inodeKey,
  RECORD_BYTES,
  RecordFlag,
  recordMode,
  RecordWriter,
  statOfRecord,
  statOfStatx,
  statxBlocks,
  statxGid,
  statxIno,
  statxMode,
  statxNlink,
  statxSize,
  statxUid,
  type WalkEntry,
  writeStat,
} from "./records.ts";
export { BulkLane } from "./lane.ts";
export {
  BULK_IN_FLIGHT_BYTES,
  bulkCost,
  type CallOptions,
  type CloseInfo,
  helloOfFrame,
  type RawConn,
  type RpcCalls,
  RpcClient,
  type RpcClientOptions,
  type RpcFailureResult,
  type RpcResult,
  type TraceEvent,
} from "./client.ts";
export {
  BytesReply,
  DecodedRequest,
  Dispatcher,
  type Fatal,
  type Handlers,
  Later,
  type NowReply,
  type Reply,
  RpcFailure,
} from "./server.ts";
export { type Infer, type InferWire, INVALID, type Schema } from "./schema.ts";
export {
  createPackr,
  createUnpackr,
  decodeBody,
  encodeFrame,
  encodeRequest,
  firstFrameLength,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  Kind,
  LARGE_PAYLOAD_BYTES,
  preview,
} from "./wire.ts";
