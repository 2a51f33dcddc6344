import { deepStrictEqual, throws } from "node:assert/strict";
import { Dechunker } from "./engine_api.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function decodeAll(pieces: string[]): { body: string; done: boolean } {
  const d = new Dechunker();
  let body = "";
  for (const piece of pieces) {
    for (const part of d.push(enc.encode(piece))) body += dec.decode(part);
  }
  return { body, done: d.done };
}

const WIRE = '1a\r\n{"Type":"container","x":1}\r\n5;ext=1\r\nhello\r\n0\r\n\r\n';

Deno.test("dechunk: a whole chunked body", () => {
  deepStrictEqual(decodeAll([WIRE]), { body: '{"Type":"container","x":1}hello', done: true });
});

Deno.test("dechunk: the same body split at every position", () => {
  for (let at = 0; at <= WIRE.length; at++) {
    deepStrictEqual(
      decodeAll([WIRE.slice(0, at), WIRE.slice(at)]),
      { body: '{"Type":"container","x":1}hello', done: true },
      `split at ${at}`,
    );
  }
});

Deno.test("dechunk: an unfinished stream is not done; a bad size throws", () => {
  deepStrictEqual(decodeAll(["5\r\nhel"]), { body: "hel", done: false });
  throws(() => new Dechunker().push(enc.encode("zz\r\n")), /bad chunk size/);
});
