/**
 * Test helper (not part of the client): a scriptable stand-in for the satellite's RPC, plus
 * nodes, request contexts and stats to drive the filesystem parts without Docker, FUSE or root.
 *
 * The fake behaves like `RpcClient.call` where the tests rely on it: calls never reject, an
 * aborted signal answers EINTR at once and the satellite's late answer is dropped (the
 * operation itself still completes "in the satellite", i.e. the handler runs to its end).
 *
 * @module
 */

import { fakeStat } from "../protocol/_test_utils.ts";
import type { Node, RequestContext } from "../fuse/mod.ts";
import {
  type CallOptions,
  type ErrnoName,
  errnoNumber,
  INVALID,
  type MethodName,
  METHODS,
  type ParamsOf,
  type ResultOf,
  type RpcCalls,
  type RpcFailureResult,
  type RpcResult,
  type Stat,
} from "../protocol/mod.ts";

/** Answers one method's calls (synchronously or later). */
export type FakeHandler<M extends MethodName> = (
  params: ParamsOf<M>,
) => RpcResult<ResultOf<M>> | Promise<RpcResult<ResultOf<M>>>;

/** One call the fake received. */
export interface FakeCall {
  readonly method: MethodName;
  readonly params: Record<string, unknown>;
  /** Whether the caller passed an abort signal. */
  readonly cancellable: boolean;
}

/** A successful result. */
export function ok<T>(value: T): RpcResult<T> {
  return { ok: true, value };
}

/** A failed result, as the client gives it. */
export function fail(code: ErrnoName): RpcFailureResult {
  return { ok: false, errno: errnoNumber(code), code, message: `${code} (fake)` };
}

/** A promise with its resolver, to answer a call when the test decides. */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** The fake RPC: methods without a handler answer ENOSYS. */
export class FakeRpc {
  readonly calls: FakeCall[] = [];
  readonly call: RpcCalls;
  readonly #handlers = new Map<MethodName, (params: never) => unknown>();

  constructor() {
    const call: Record<string, unknown> = {};
    for (const method of Object.keys(METHODS) as MethodName[]) {
      call[method] = (params: unknown, options?: CallOptions) =>
        this.#invoke(method, params, options);
    }
    this.call = call as RpcCalls;
  }

  /** Sets how `method` answers. */
  on<M extends MethodName>(method: M, handler: FakeHandler<M>): this {
    this.#handlers.set(method, handler as (params: never) => unknown);
    return this;
  }

  /** Methods called so far, in order. */
  methods(): MethodName[] {
    return this.calls.map((c) => c.method);
  }

  /** Params of the calls of `method`, in order. */
  paramsOf<M extends MethodName>(method: M): ParamsOf<M>[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.params as ParamsOf<M>);
  }

  /**
   * What a method answers without a handler of its own, where the protocol defines it from
   * another: `lookup` is `lstat` without a node handle, `forget` closes nothing.
   */
  #implied(method: MethodName): ((params: never) => unknown) | undefined {
    if (method === "forget") return () => ok(null);
    const lstat = this.#handlers.get("lstat");
    if (method !== "lookup" || lstat === undefined) return undefined;
    return (params: never) => {
      const answer = (lstat as (p: unknown) => unknown)(params) as
        | RpcResult<Stat>
        | Promise<RpcResult<Stat>>;
      const wrap = (r: RpcResult<Stat>): RpcResult<{ stat: Stat }> =>
        r.ok ? ok({ stat: r.value }) : r;
      return answer instanceof Promise ? answer.then(wrap) : wrap(answer);
    };
  }

  #invoke(
    method: MethodName,
    params: unknown,
    options: CallOptions | undefined,
  ): Promise<RpcResult<unknown>> {
    const signal = options?.signal;
    this.calls.push({
      method,
      params: params as Record<string, unknown>,
      cancellable: signal !== undefined,
    });
    if (signal?.aborted) return Promise.resolve(fail("EINTR"));
    // As the satellite does: params the method's schema refuses are EINVAL.
    if (METHODS[method].params.parse(params) === INVALID) return Promise.resolve(fail("EINVAL"));
    const handler = this.#handlers.get(method) ?? this.#implied(method);
    const answer: Promise<RpcResult<unknown>> = Promise.resolve(
      handler ? (handler as (p: unknown) => unknown)(params) as RpcResult<unknown> : fail("ENOSYS"),
    );
    if (signal === undefined) return answer;
    return new Promise((resolve) => {
      const onAbort = (): void => resolve(fail("EINTR"));
      signal.addEventListener("abort", onAbort, { once: true });
      answer.then((r) => {
        signal.removeEventListener("abort", onAbort);
        resolve(r);
      });
    });
  }
}

/** A request context of `uid`/`gid`; abort `controller` to interrupt it. */
export function fakeContext(
  options: { uid?: number; gid?: number; controller?: AbortController } = {},
): RequestContext {
  return {
    uid: options.uid ?? 0,
    gid: options.gid ?? 0,
    pid: 1,
    unique: 1n,
    opcode: 0,
    signal: (options.controller ?? new AbortController()).signal,
  };
}

/** A node as the FUSE layer keeps it: `parent` undefined and `name` "" make the root. */
export function fakeNode(key: string, parent?: Node, name = ""): Node {
  const node = {
    nodeId: 0n,
    key,
    ino: 0n,
    parent,
    name,
    data: undefined as unknown,
    get path(): string | undefined {
      if (parent === undefined) return name === "" ? "/" : undefined;
      const base = parent.path;
      if (base === undefined) return undefined;
      return base === "/" ? `/${name}` : `${base}/${name}`;
    },
  };
  return node;
}

/** The key ContainerFs gives the inode of `stat` ("dev:ino"). */
export function keyOf(stat: Stat): string {
  return `${stat.devMajor}:${stat.devMinor}:${stat.ino}`;
}

/** A logger that keeps what it was told. */
export function fakeLogger(): {
  debug(m: string): void;
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
  readonly lines: string[];
} {
  const lines: string[] = [];
  return {
    lines,
    debug: () => {},
    info: (m) => lines.push(`info: ${m}`),
    warn: (m) => lines.push(`warn: ${m}`),
    error: (m) => lines.push(`error: ${m}`),
  };
}

export { fakeStat };
