/**
 * An in-process fake satellite for client tests: a Dispatcher over TransformStreams, with
 * hooks to reorder, hold back or corrupt what it sends.
 *
 * @module
 */

import {
  Dispatcher,
  FrameDecoder,
  type Handlers,
  type Hello,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  RpcClient,
  type RpcClientOptions,
} from "../../src/protocol/mod.ts";

/** The default handshake of the fake. */
export const FAKE_HELLO: Hello = {
  protocol: PROTOCOL_VERSION,
  buildId: "fake",
  pid: 1,
  uid: 0,
  gid: 0,
  arch: "x86_64",
  root: "/",
  maxFrameBytes: MAX_FRAME_BYTES,
};

/** A connected client and the fake's controls. */
export interface Fake {
  readonly client: RpcClient;
  readonly dispatcher: Dispatcher;
  /** Writes raw bytes to the client (as if from the satellite's stdout). */
  send(bytes: Uint8Array): Promise<void>;
  /** Ends the satellite's stdout. */
  end(): Promise<void>;
  /** Response frames held back (when `hold` is true), in arrival order. */
  readonly held: Uint8Array[];
  /** Requests received so far. */
  readonly received: number;
}

/** Options of {@link startFake}. */
export interface FakeOptions {
  hello?: Hello | null;
  /** Keep responses in `held` instead of sending them. */
  hold?: boolean;
  client?: RpcClientOptions;
}

/** Starts a fake satellite with `handlers` and a client connected to it. */
export function startFake(handlers: Partial<Handlers>, options: FakeOptions = {}): Fake {
  const dispatcher = new Dispatcher(handlers as Handlers);
  const toSat = new TransformStream<Uint8Array, Uint8Array>();
  const fromSat = new TransformStream<Uint8Array, Uint8Array>();
  const writer = fromSat.writable.getWriter();
  const held: Uint8Array[] = [];
  let received = 0;
  const hello = options.hello === undefined ? FAKE_HELLO : options.hello;
  if (hello) writer.write(dispatcher.helloFrame(hello)).catch(() => {});
  (async () => {
    const decoder = new FrameDecoder();
    try {
      for await (const chunk of toSat.readable) {
        decoder.push(chunk, (body) => {
          received++;
          const r = dispatcher.handle(body);
          const frame = r instanceof Uint8Array ? r : r.frame;
          if (options.hold) held.push(frame);
          else writer.write(frame).catch(() => {});
        });
      }
    } catch {
      // client went away
    }
  })();
  const client = new RpcClient(fromSat.readable, toSat.writable, options.client);
  return {
    client,
    dispatcher,
    send: (bytes) => writer.write(bytes).catch(() => {}),
    end: () => writer.close().catch(() => {}),
    held,
    get received() {
      return received;
    },
  };
}
