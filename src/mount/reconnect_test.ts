// The reconnect supervisor with fake steps: redeploy after a loss, engine reconnection, removal
// and closing.

import { deepStrictEqual, equal } from "node:assert/strict";
import { deferred, fakeLogger, FakeRpc } from "../fs/_fake_rpc.ts";
import { type ReconnectSteps, type Satellite, supervise } from "./reconnect.ts";
import { ReconnectingRpc } from "./reconnecting_rpc.ts";

interface FakeSatellite extends Satellite {
  isClosed: boolean;
  die(reason: string): void;
  stopped: boolean;
}

function satellite(): FakeSatellite {
  const end = deferred<string>();
  const s: FakeSatellite = {
    call: new FakeRpc().call,
    isClosed: false,
    ended: end.promise,
    stopped: false,
    die(reason) {
      s.isClosed = true;
      end.resolve(reason);
    },
    stop() {
      s.stopped = true;
      return Promise.resolve();
    },
  };
  return s;
}

class EngineDown extends Error {}

function setup(plan: Array<"running" | "removed" | "engine-down">) {
  const link = new ReconnectingRpc({ graceMs: 0 });
  const first = satellite();
  link.attach(first);
  const deployed: FakeSatellite[] = [];
  const log: string[] = [];
  const reconnected: number[] = [];
  const steps: ReconnectSteps<string> = {
    waitRunning() {
      const next = plan.shift() ?? "removed";
      log.push(`wait:${next}`);
      if (next === "engine-down") return Promise.reject(new EngineDown("engine down"));
      return Promise.resolve(next === "removed" ? { removed: "container 'c' was removed" } : "c");
    },
    deploy() {
      const s = satellite();
      deployed.push(s);
      log.push("deploy");
      return Promise.resolve(s);
    },
    engineLost: (error) => error instanceof EngineDown,
    reconnectEngine() {
      log.push("engine");
      return Promise.resolve();
    },
  };
  const stop = new AbortController();
  const run = supervise(first, {
    link,
    steps,
    logger: fakeLogger(),
    describe: (c) => c,
    onReconnected: (_c, _s, generation) => reconnected.push(generation),
    sleep: () => Promise.resolve(),
  }, stop.signal);
  return { link, first, deployed, log, reconnected, stop, run };
}

Deno.test("supervise: a lost satellite is redeployed and attached as the next connection", async () => {
  const t = setup(["running", "removed"]);
  t.first.die("satellite closed its output");
  while (t.deployed.length === 0) await new Promise((r) => setTimeout(r, 0));
  equal(t.link.generation, 2);
  equal(t.link.up, true);
  deepStrictEqual(t.reconnected, [2]);
  equal(t.first.stopped, true);
  equal(t.run.current(), t.deployed[0]);
  t.deployed[0]!.die("again");
  equal(await t.run.ended, "container 'c' was removed");
  deepStrictEqual(t.log, ["wait:running", "deploy", "wait:removed"]);
});

Deno.test("supervise: when the engine is out of reach it is reconnected to, then waited on again", async () => {
  const t = setup(["engine-down", "engine-down", "running"]);
  t.first.die("exec ended");
  while (t.deployed.length === 0) await new Promise((r) => setTimeout(r, 0));
  deepStrictEqual(t.log, [
    "wait:engine-down",
    "engine",
    "wait:engine-down",
    "engine",
    "wait:running",
    "deploy",
  ]);
  t.stop.abort();
  equal(await t.run.ended, undefined);
});

Deno.test("supervise: closing the mount ends the loop without redeploying", async () => {
  const t = setup(["running"]);
  t.stop.abort();
  t.first.die("the mount ended");
  equal(await t.run.ended, undefined);
  deepStrictEqual(t.log, []);
});
