// The RpcClient against the real satellite (started from source over pipes).

import { equal } from "node:assert/strict";
import { errnoOf, startSatellite, valueOf } from "./harness.ts";

Deno.test("100 calls in flight against the real satellite", async () => {
  const root = await Deno.makeTempDir({ prefix: "dfsat-many-" });
  for (let i = 0; i < 50; i++) Deno.writeFileSync(`${root}/f${i}`, new Uint8Array(i * 3));
  const h = startSatellite(root);
  try {
    const calls = Array.from({ length: 100 }, (_, i) => h.client.call.lstat({ path: `f${i}` }));
    const results = await Promise.all(calls);
    results.forEach((r, i) => {
      if (i < 50) equal(valueOf(r).size, BigInt(i * 3));
      else equal(errnoOf(r), "ENOENT");
    });
  } finally {
    await h.stop();
    await Deno.remove(root, { recursive: true });
  }
});
