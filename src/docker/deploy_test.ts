import assert from "node:assert/strict";
import { uploadImpossible } from "./deploy.ts";
import type { ContainerInfo } from "./engine.ts";

const BASE: ContainerInfo = {
  id: "c",
  name: "c",
  running: true,
  arch: "x86_64",
  platform: "linux/amd64",
};

Deno.test("deploy: auto skips the upload only for a read-only root without a writable volume", () => {
  assert.equal(uploadImpossible(BASE), undefined);
  assert.equal(uploadImpossible({ ...BASE, readOnlyRootfs: false, writableMounts: [] }), undefined);
  assert.equal(
    uploadImpossible({ ...BASE, readOnlyRootfs: true, writableMounts: ["/data"] }),
    undefined,
  );
  assert.match(
    uploadImpossible({ ...BASE, readOnlyRootfs: true, writableMounts: [] }) ?? "",
    /read-only.*no writable volume/,
  );
  assert.match(uploadImpossible({ ...BASE, readOnlyRootfs: true }) ?? "", /read-only/);
});
