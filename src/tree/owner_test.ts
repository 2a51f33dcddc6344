import { equal } from "node:assert/strict";
import { ownerGone, ownerId } from "./mod.ts";

Deno.test("owner: this process is alive; a dead pid or a reused one is gone; other hosts are not judged", async () => {
  const me = await ownerId();
  equal(await ownerGone(me), false);
  const [host, pid, ticks] = me.split(":");
  equal(await ownerGone(`${host}:${pid}:${Number(ticks) + 1}`), true, "pid reused");
  equal(await ownerGone(`${host}:4194304:1`), true, "no such pid");
  equal(await ownerGone(`another-host:4194304:1`), false);
  equal(await ownerGone(""), false, "no owner label: never removed");
});
