import { equal, match } from "node:assert/strict";
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
  equal(uploadImpossible(BASE), undefined);
  equal(uploadImpossible({ ...BASE, readOnlyRootfs: false, writableMounts: [] }), undefined);
  equal(
    uploadImpossible({ ...BASE, readOnlyRootfs: true, writableMounts: ["/data"] }),
    undefined,
  );
  match(
    uploadImpossible({ ...BASE, readOnlyRootfs: true, writableMounts: [] }) ?? "",
    /read-only.*no writable volume/,
  );
  match(uploadImpossible({ ...BASE, readOnlyRootfs: true }) ?? "", /read-only/);
});
