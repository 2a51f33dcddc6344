// ReconnectingRpc against fake connections: waiting for a connection, the grace period, and
// handle calls never crossing connections.

import { deepStrictEqual, equal } from "node:assert/strict";
import { FakeRpc, ok } from "../fs/_fake_rpc.ts";
import { ReconnectingRpc } from "./reconnecting_rpc.ts";

function connection(): { rpc: FakeRpc; isClosed: boolean; call: FakeRpc["call"] } {
  const rpc = new FakeRpc();
  rpc.on("lstat", () => ok({} as never));
  rpc.on("read", () => ok(new Uint8Array([1])));
  return { rpc, isClosed: false, call: rpc.call };
}

Deno.test("reconnecting rpc: a call made while disconnected goes to the next connection", async () => {
  const link = new ReconnectingRpc({ graceMs: 60_000 });
  const a = connection();
  equal(link.attach(a), 1);
  a.isClosed = true; // the satellite died; the supervisor has not noticed yet
  const waiting = link.call.lstat({ path: "x" });
  const b = connection();
  equal(link.attach(b), 2);
  equal((await waiting).ok, true);
  deepStrictEqual(a.rpc.methods(), []);
  deepStrictEqual(b.rpc.methods(), ["lstat"]);
});

Deno.test("reconnecting rpc: without a connection within the grace period a call fails with EIO", async () => {
  const link = new ReconnectingRpc({ graceMs: 10 });
  link.attach(connection());
  link.detach();
  const r = await link.call.lstat({ path: "x" });
  equal(r.ok ? "ok" : r.code, "EIO");
  equal(await link.connected(), false);
});

Deno.test("reconnecting rpc: a handle's calls are never sent on another connection", async () => {
  const link = new ReconnectingRpc({ graceMs: 60_000 });
  const a = connection();
  const gen = link.attach(a);
  equal((await link.on(gen).read({ handle: 3, offset: 0n, size: 1 })).ok, true);
  link.detach();
  const down = await link.on(gen).read({ handle: 3, offset: 0n, size: 1 });
  equal(down.ok ? "ok" : down.code, "EIO");
  const b = connection();
  link.attach(b);
  const later = await link.on(gen).read({ handle: 3, offset: 0n, size: 1 });
  equal(later.ok ? "ok" : later.code, "EIO");
  deepStrictEqual(b.rpc.methods(), [], "the new satellite got an old handle");
  deepStrictEqual(a.rpc.methods(), ["read"]);
});

Deno.test("reconnecting rpc: after end() waiting calls and new ones fail at once", async () => {
  const link = new ReconnectingRpc({ graceMs: 60_000 });
  link.attach(connection());
  link.detach();
  const waiting = link.call.lstat({ path: "x" });
  link.end();
  const r = await waiting;
  equal(r.ok ? "ok" : r.code, "EIO");
  equal(await link.connected(), false);
});
