import { deepStrictEqual, equal, throws } from "node:assert/strict";
import { createHash } from "node:crypto";
import { DockerError } from "./errors.ts";
import {
  checkLoadStream,
  dockerArchive,
  imageConfig,
  LABEL_ARCH,
  LABEL_BUILD,
  platformOf,
  satelliteImageRef,
} from "./satellite_image.ts";
import { readTar, type TarPart, tarParts } from "./tar.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends an archive as the engine would receive it (sources in order). */
async function collect(parts: TarPart[]): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    if (part instanceof Uint8Array) chunks.push(part);
    else for await (const chunk of part.chunks()) chunks.push(chunk.slice());
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

Deno.test("satellite image: reference and platform per architecture", () => {
  equal(
    satelliteImageRef({ arch: "aarch64", buildId: "abc123" }),
    "dockerfuse-satellite:aarch64-abc123",
  );
  equal(platformOf("x86_64"), "linux/amd64");
  equal(platformOf("aarch64"), "linux/arm64");
  throws(() => platformOf("riscv64"), DockerError);
});

Deno.test("satellite image: the config names the architecture, the labels and the layer", () => {
  const config = JSON.parse(
    decoder.decode(imageConfig({ arch: "aarch64", buildId: "b1" }, "sha256:" + "a".repeat(64))),
  );
  equal(config.architecture, "arm64");
  equal(config.variant, "v8");
  equal(config.os, "linux");
  deepStrictEqual(config.config.Labels, { [LABEL_BUILD]: "b1", [LABEL_ARCH]: "aarch64" });
  deepStrictEqual(config.rootfs, { type: "layers", diff_ids: ["sha256:" + "a".repeat(64)] });
  const amd = JSON.parse(decoder.decode(imageConfig({ arch: "x86_64", buildId: "b1" }, "x")));
  equal(amd.architecture, "amd64");
  equal(amd.variant, undefined);
});

Deno.test("satellite image: the docker-archive's diff id is the sha256 of the layer sent", async () => {
  const payload = encoder.encode("satellite bytes ".repeat(1000));
  const layer = tarParts([
    { path: "dockerfuse", type: "directory", mode: 0o700 },
    {
      path: "dockerfuse/deno",
      type: "file",
      mode: 0o700,
      // a streamed source, as the bundle's files are
      source: {
        length: payload.length,
        async *chunks() {
          yield payload.subarray(0, 100);
          yield payload.subarray(100);
        },
      },
    },
  ]);
  const layerBytes = await collect(layer);
  const archive = dockerArchive(layer, { arch: "x86_64", buildId: "b2" });
  const declared = archive.reduce((n, p) => n + p.length, 0);
  const bytes = await collect(archive);
  equal(bytes.length, declared);
  const files = new Map(readTar(bytes).map((f) => [f.path, f.data]));
  deepStrictEqual(files.get("layer/layer.tar"), layerBytes);
  const index = JSON.parse(decoder.decode(files.get("manifest.json")));
  deepStrictEqual(index, [{
    Config: "config.json",
    RepoTags: ["dockerfuse-satellite:x86_64-b2"],
    Layers: ["layer/layer.tar"],
  }]);
  const config = JSON.parse(decoder.decode(files.get("config.json")));
  const digest = createHash("sha256").update(layerBytes).digest("hex");
  deepStrictEqual(config.rootfs.diff_ids, [`sha256:${digest}`]);
  equal(config.config.Labels[LABEL_BUILD], "b2");
  // The layer inside is the bundle.
  deepStrictEqual(
    readTar(files.get("layer/layer.tar")!).map((f) => f.path),
    ["dockerfuse/", "dockerfuse/deno"],
  );
});

Deno.test("satellite image: a load stream's error becomes a DockerError", () => {
  checkLoadStream('{"stream":"Loaded image: dockerfuse-satellite:x86_64-b\\n"}\n');
  throws(
    () => checkLoadStream('{"errorDetail":{"message":"no space left on device"},"error":"x"}\n'),
    (e) => e instanceof DockerError && e.code === "api" && /x|no space/.test(e.message),
  );
  throws(
    () => checkLoadStream('{"errorDetail":{"message":"no space left on device"}}'),
    (e) => e instanceof DockerError && /no space left on device/.test(e.message),
  );
});
