import { deepStrictEqual, equal } from "node:assert/strict";
import { containerDir, imageDirs } from "./layout.ts";

Deno.test("layout: each '/' of a repository is a subdirectory; leaves are name:tag", () => {
  const dirs = imageDirs([
    { id: "1", tags: ["alpine:3", "ghcr.io/org/app:1.2", "localhost:5000/tool:dev"], created: 0 },
    { id: "2", tags: ["ghcr.io/org/app:1.3"], created: 0 },
  ]);
  deepStrictEqual([...dirs.keys()].sort(), [
    "/images",
    "/images/ghcr.io",
    "/images/ghcr.io/org",
    "/images/localhost:5000",
  ]);
  deepStrictEqual([...dirs.get("/images")!.keys()], ["alpine:3", "ghcr.io", "localhost:5000"]);
  deepStrictEqual([...dirs.get("/images/ghcr.io/org")!.keys()], ["app:1.2", "app:1.3"]);
  const leaf = dirs.get("/images/localhost:5000")!.get("tool:dev");
  equal(
    leaf?.kind === "target" && leaf.target.kind === "image" && leaf.target.ref,
    "localhost:5000/tool:dev",
  );
});

Deno.test("layout: untagged or unusable references are left out", () => {
  const dirs = imageDirs([
    { id: "1", tags: ["noTag", "a/../b:1", "x:"], created: 0 },
  ]);
  deepStrictEqual([...dirs.get("/images")!.keys()], []);
});

Deno.test("layout: containers/ lists running and stopped containers with usable names", () => {
  const entries = containerDir([
    { id: "a", name: "web", running: true, created: 0 },
    { id: "b", name: "stopped", running: false, created: 0 },
    { id: "c", name: "..", running: true, created: 0 },
  ]);
  deepStrictEqual([...entries.keys()], ["web", "stopped"]);
  equal(entries.get("web")?.key, "c:a");
  equal(entries.get("stopped")?.key, "s:b", "a stopped container is another inode");
});
