// The satellite's compressed bundle (issue 14): made once per build, entries relative and 0:0.

import { deepStrictEqual, ok } from "node:assert/strict";
import { compressedBundle, compressedBundlePath, type SatelliteManifest } from "./satellite.ts";

/** Headers of a tar archive: path, typeflag, mode, uid, gid and contents. */
function headers(tar: Uint8Array): [string, string, number, number, number, string][] {
  const text = (at: number, n: number): string =>
    new TextDecoder().decode(tar.subarray(at, at + n)).replace(/\0.*$/s, "");
  const num = (at: number, n: number): number => parseInt(text(at, n).trim() || "0", 8);
  const out: [string, string, number, number, number, string][] = [];
  for (let at = 0; at + 512 <= tar.length && tar[at] !== 0;) {
    const size = num(at + 124, 12);
    const data = new TextDecoder().decode(tar.subarray(at + 512, at + 512 + size));
    out.push([
      text(at, 100),
      text(at + 156, 1),
      num(at + 100, 8),
      num(at + 108, 8),
      num(at + 116, 8),
      data,
    ]);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

Deno.test("satellite: the bundle is compressed once per build, entries relative and owned by 0:0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/lib`);
    await Deno.writeTextFile(`${dir}/deno`, "runtime");
    await Deno.writeTextFile(`${dir}/lib/ld.so`, "loader");
    await Deno.writeTextFile(`${dir}/satellite.js`, "script");
    const manifest = {
      buildId: "abc123",
      files: [
        { path: "deno", mode: 0o755 },
        { path: "lib/ld.so", mode: 0o755 },
        { path: "satellite.js", mode: 0o644 },
      ],
    } as SatelliteManifest;
    const path = await compressedBundle(dir, manifest);
    deepStrictEqual(path, compressedBundlePath(dir, manifest));
    deepStrictEqual(path, `${dir}/bundle-abc123.tar.gz`);
    const gz = await Deno.readFile(path!);
    deepStrictEqual([gz[0], gz[1]], [0x1f, 0x8b], "gzip");
    const tar = new Uint8Array(
      await new Response(new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip")))
        .arrayBuffer(),
    );
    deepStrictEqual(headers(tar), [
      ["deno", "0", 0o700, 0, 0, "runtime"],
      ["lib/", "5", 0o700, 0, 0, ""],
      ["lib/ld.so", "0", 0o700, 0, 0, "loader"],
      ["satellite.js", "0", 0o600, 0, 0, "script"],
    ]);
    // Made once: a second mount takes the same file as it is.
    const made = (await Deno.stat(path!)).mtime;
    await Deno.writeTextFile(`${dir}/satellite.js`, "changed without a new build id");
    deepStrictEqual(await compressedBundle(dir, manifest), path);
    deepStrictEqual((await Deno.stat(path!)).mtime, made);
    // No temporary file left behind.
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    ok(names.every((n) => !n.includes(".tmp-")), names.join(" "));
    // A new build gets its own archive.
    const next = await compressedBundle(dir, { ...manifest, buildId: "def456" });
    deepStrictEqual(next, `${dir}/bundle-def456.tar.gz`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("satellite: a bundle dir that cannot be written is compressed on the fly instead", async () => {
  const manifest = { buildId: "abc", files: [] as SatelliteManifest["files"] } as SatelliteManifest;
  deepStrictEqual(await compressedBundle("/proc/nonexistent-bundle", manifest), undefined);
  deepStrictEqual(await compressedBundle("/tmp", { ...manifest, buildId: "../x" }), undefined);
});
