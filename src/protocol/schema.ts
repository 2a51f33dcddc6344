/**
 * Tiny runtime schemas: each method's params and result are declared once as a schema, which
 * gives both the TypeScript type (`Infer<S>`) and a validator for values decoded off the wire.
 *
 * Validators never throw: they return the (normalised) value or `INVALID`. Objects are rebuilt
 * with only the declared keys, so unknown keys from a peer never reach handlers.
 *
 * @module
 */

/** Returned by a schema's `parse` for a value that does not fit. */
export const INVALID: unique symbol = Symbol("invalid");
/** The type of {@link INVALID}. */
export type Invalid = typeof INVALID;

/**
 * A runtime description of the type `T`, sent as `W`. They differ only for records (see
 * records.ts): a sender hands the encoder packed bytes, a receiver's `parse` gives objects.
 */
export interface Schema<T, W = T> {
  /** Human-readable type, for error messages. */
  readonly describe: string;
  /** Validates a decoded value; returns the value (normalised) or INVALID. */
  parse(value: unknown): T | Invalid;
  /**
   * What the encoder is handed for a sender's value, when that is not the value itself (a Stat
   * goes out as its record); absent for schemas whose values travel as they are.
   */
  encode?(value: W): unknown;
  /** Never set: carries the sender's type `W` for {@link InferWire} (in a tuple, so an
   * optional schema's `undefined` survives inference). */
  readonly wire?: readonly [W];
}

/** A schema whose object key may be absent (or null/undefined on the wire). */
export interface OptionalSchema<T, W = T> extends Schema<T | undefined, W | undefined> {
  readonly optional: true;
}

/** The TypeScript type described by a schema: what `parse` gives a receiver. */
export type Infer<S> = S extends Schema<infer T, infer _W> ? T : never;
/** The type a sender encodes for a schema. */
export type InferWire<S> = S extends Schema<infer _T, infer W> ? W : never;

type Shape = Record<string, Schema<unknown, unknown>>;
type OptionalKeys<S extends Shape> = {
  [K in keyof S]: S[K] extends OptionalSchema<unknown, unknown> ? K : never;
}[keyof S];
type Flatten<T> = { [K in keyof T]: T[K] } & unknown;
/** The object type described by a shape: optional schemas make optional keys. */
export type InferShape<S extends Shape> = Flatten<
  & { [K in Exclude<keyof S, OptionalKeys<S>>]: Infer<S[K]> }
  & { [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined> }
>;
/** The object type a sender encodes for a shape. */
export type InferWireShape<S extends Shape> = Flatten<
  & { [K in Exclude<keyof S, OptionalKeys<S>>]: InferWire<S[K]> }
  & { [K in OptionalKeys<S>]?: Exclude<InferWire<S[K]>, undefined> }
>;

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** A string of at most `maxLength` UTF-16 units. */
export function str(maxLength = 1 << 20): Schema<string> {
  return {
    describe: "string",
    parse: (v) => typeof v === "string" && v.length <= maxLength ? v : INVALID,
  };
}

/** Raw bytes of at most `maxLength`; travels as msgpack bin, decoded without copying. */
export function bytes(maxLength = 1 << 21): Schema<Uint8Array> {
  return {
    describe: "bytes",
    parse: (v) => v instanceof Uint8Array && v.length <= maxLength ? v : INVALID,
  };
}

/**
 * A UTF-8 string of at most `maxLength` UTF-16 units, or raw bytes (at most `maxLength`) for
 * names that are not valid UTF-8.
 */
export function nameOf(maxLength: number): Schema<string | Uint8Array> {
  return {
    describe: "string or bytes",
    parse: (v) =>
      (typeof v === "string" && v.length <= maxLength) ||
        (v instanceof Uint8Array && v.length <= maxLength)
        ? v
        : INVALID,
  };
}

/** A UTF-8 string, or raw bytes for names that are not valid UTF-8 (at most 8192). */
export const name: Schema<string | Uint8Array> = nameOf(8192);

/** An unsigned 32-bit integer (number). */
export const u32: Schema<number> = {
  describe: "u32",
  parse: (v) =>
    typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff ? v : INVALID,
};

/** A signed 32-bit integer (number). */
export const i32: Schema<number> = {
  describe: "i32",
  parse: (v) =>
    typeof v === "number" && Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff
      ? v
      : INVALID,
};

/** A safe integer (number), e.g. seconds since the epoch. Accepts bigint in range. */
export const int: Schema<number> = {
  describe: "integer",
  parse: (v) => {
    if (typeof v === "number") return Number.isSafeInteger(v) ? v : INVALID;
    if (typeof v === "bigint") {
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(v)
        : INVALID;
    }
    return INVALID;
  },
};

/** An unsigned 64-bit integer as bigint (offsets, sizes, inode numbers). Accepts safe numbers. */
export const u64: Schema<bigint> = {
  describe: "u64",
  parse: (v) => {
    if (typeof v === "bigint") return v >= 0n && v <= U64_MAX ? v : INVALID;
    if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
    return INVALID;
  },
};

/** A signed 64-bit integer as bigint. Accepts safe numbers. */
export const i64: Schema<bigint> = {
  describe: "i64",
  parse: (v) => {
    if (typeof v === "bigint") return v >= I64_MIN && v <= I64_MAX ? v : INVALID;
    if (typeof v === "number" && Number.isSafeInteger(v)) return BigInt(v);
    return INVALID;
  },
};

/** A boolean. */
export const bool: Schema<boolean> = {
  describe: "boolean",
  parse: (v) => typeof v === "boolean" ? v : INVALID,
};

/** Nothing: null on the wire (undefined accepted). */
export const nil: Schema<null> = {
  describe: "null",
  parse: (v) => v === null || v === undefined ? null : INVALID,
};

/** An optional value: absent, null and undefined all read as undefined. */
export function opt<T, W>(schema: Schema<T, W>): OptionalSchema<T, W> {
  const encode = schema.encode;
  return {
    optional: true,
    describe: `${schema.describe}?`,
    parse: (v) => v === null || v === undefined ? undefined : schema.parse(v),
    ...(encode && { encode: (v: W | undefined) => v === undefined ? v : encode(v) }),
  };
}

/** An array of at most `maxLength` elements. */
export function arr<T, W>(schema: Schema<T, W>, maxLength = 65536): Schema<T[], W[]> {
  return {
    describe: `${schema.describe}[]`,
    parse: (v) => {
      if (!Array.isArray(v) || v.length > maxLength) return INVALID;
      const out: T[] = new Array(v.length);
      for (let i = 0; i < v.length; i++) {
        const e = schema.parse(v[i]);
        if (e === INVALID) return INVALID;
        out[i] = e;
      }
      return out;
    },
    ...(schema.encode && { encode: (v: W[]) => v.map(schema.encode!) }),
  };
}

/** One of two schemas (the first that fits). */
export function either<A, B>(a: Schema<A>, b: Schema<B>): Schema<A | B> {
  return {
    describe: `${a.describe} | ${b.describe}`,
    parse: (v) => {
      const x = a.parse(v);
      return x !== INVALID ? x : b.parse(v);
    },
  };
}

/** A plain object with the given keys; other keys are dropped. */
export function obj<S extends Shape>(shape: S): Schema<InferShape<S>, InferWireShape<S>> {
  const keys = Object.keys(shape);
  const schemas = keys.map((k) => shape[k]);
  return {
    describe: `{${keys.join(", ")}}`,
    parse: (v) => {
      if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array) {
        return INVALID;
      }
      const src = v as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) {
        const value = schemas[i].parse(src[keys[i]]);
        if (value === INVALID) return INVALID;
        if (value !== undefined) out[keys[i]] = value;
      }
      return out as InferShape<S>;
    },
    ...(keys.some((k) => shape[k].encode) && {
      encode: (v: InferWireShape<S>) => {
        const src = v as Record<string, unknown>;
        const out: Record<string, unknown> = {};
        for (let i = 0; i < keys.length; i++) {
          const value = src[keys[i]];
          const encode = schemas[i].encode;
          out[keys[i]] = encode && value !== undefined ? encode(value) : value;
        }
        return out;
      },
    }),
  };
}
