/**
 * Deterministic contents of the test images' /data folders. Tests import these
 * generators to know what to expect instead of hard-coding results.
 */

export type DataEntry =
  | { type: "dir"; path: string; mode: number }
  | { type: "file"; path: string; mode: number; content: Uint8Array }
  | { type: "symlink"; path: string; target: string };

/** Size of /data/large.bin in the glibc image. */
export const LARGE_FILE_SIZE = 64 * 1024 * 1024;

/** 32-bit avalanche mix; word k of large.bin is mix32(k). */
function mix32(k: number): number {
  let h = (k ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** Bytes [offset, offset+length) of /data/large.bin (clipped to the file size). */
export function largeFileBytes(offset: number, length: number): Uint8Array {
  const end = Math.min(offset + length, LARGE_FILE_SIZE);
  if (end <= offset) return new Uint8Array(0);
  const firstWord = Math.floor(offset / 4);
  const lastWord = Math.floor((end - 1) / 4);
  const words = new Uint32Array(lastWord - firstWord + 1);
  for (let i = 0; i < words.length; i++) words[i] = mix32(firstWord + i);
  const bytes = new Uint8Array(words.buffer); // little-endian on x86_64 and aarch64
  const skip = offset - firstWord * 4;
  return bytes.slice(skip, skip + (end - offset));
}

const enc = new TextEncoder();

/** The /data/tree of the glibc image: 4 x 5 dirs x 15 files plus a few special entries. */
export function treeEntries(): DataEntry[] {
  const out: DataEntry[] = [{ type: "dir", path: "tree", mode: 0o755 }];
  let n = 0;
  for (let d = 0; d < 4; d++) {
    out.push({ type: "dir", path: `tree/d${d}`, mode: 0o755 });
    for (let s = 0; s < 5; s++) {
      const dir = `tree/d${d}/s${s}`;
      out.push({ type: "dir", path: dir, mode: 0o755 });
      for (let f = 0; f < 15; f++, n++) {
        const path = `${dir}/f${String(f).padStart(2, "0")}.txt`;
        // Every 50th file is ~100 KiB so reads cross several FUSE requests.
        const repeat = n % 50 === 0 ? 4000 : 1 + (n * 7) % 60;
        out.push({
          type: "file",
          path,
          mode: 0o644,
          content: enc.encode(`${path}\n`.repeat(repeat)),
        });
      }
    }
  }
  out.push({ type: "dir", path: "tree/d0/deep", mode: 0o755 });
  let deep = "tree/d0/deep";
  for (const part of ["a", "b", "c", "d", "e"]) {
    deep += `/${part}`;
    out.push({ type: "dir", path: deep, mode: 0o755 });
  }
  out.push({ type: "file", path: `${deep}/leaf.txt`, mode: 0o644, content: enc.encode("leaf\n") });
  out.push({ type: "dir", path: "tree/d1/empty", mode: 0o755 });
  out.push({ type: "dir", path: "tree/d2/private", mode: 0o700 });
  out.push({
    type: "file",
    path: "tree/d2/private/secret.txt",
    mode: 0o600,
    content: enc.encode("secret\n"),
  });
  out.push({
    type: "file",
    path: "tree/d3/name with spaces.txt",
    mode: 0o644,
    content: enc.encode("spaces\n"),
  });
  out.push({
    type: "file",
    path: "tree/d3/ünïcödé.txt",
    mode: 0o644,
    content: enc.encode("utf8\n"),
  });
  out.push({ type: "file", path: "tree/d3/empty.txt", mode: 0o644, content: new Uint8Array(0) });
  out.push({
    type: "file",
    path: "tree/d3/run.sh",
    mode: 0o755,
    content: enc.encode("#!/bin/sh\n"),
  });
  out.push({ type: "symlink", path: "tree/link-to-d0", target: "d0" });
  out.push({ type: "symlink", path: "tree/d3/link-to-f00", target: "../d0/s0/f00.txt" });
  out.push({ type: "symlink", path: "tree/dangling", target: "does/not/exist" });
  return out;
}

/** Small files every image has under /data (paths relative to /data). */
export function smallDataEntries(kind: string): DataEntry[] {
  return [
    { type: "file", path: "hello.txt", mode: 0o644, content: enc.encode(`hello from ${kind}\n`) },
    { type: "file", path: "empty", mode: 0o644, content: new Uint8Array(0) },
    { type: "dir", path: "dir", mode: 0o755 },
    {
      type: "file",
      path: "dir/nested.txt",
      mode: 0o640,
      content: enc.encode(`nested file in the ${kind} image\n`),
    },
    { type: "file", path: "binary.bin", mode: 0o644, content: largeFileBytes(0, 256 * 1024) },
    { type: "symlink", path: "hello-link", target: "hello.txt" },
  ];
}

/** Writes entries below `root` (created if needed). */
export async function writeEntries(root: string, entries: DataEntry[]): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  for (const e of entries) {
    const path = `${root}/${e.path}`;
    if (e.type === "dir") {
      await Deno.mkdir(path, { recursive: true });
      await Deno.chmod(path, e.mode);
    } else if (e.type === "file") {
      await Deno.writeFile(path, e.content);
      await Deno.chmod(path, e.mode);
    } else {
      await Deno.symlink(e.target, path);
    }
  }
}

/** Writes /data/large.bin in 4 MiB chunks. */
export async function writeLargeFile(path: string): Promise<void> {
  const file = await Deno.open(path, { create: true, write: true, truncate: true });
  try {
    const chunk = 4 * 1024 * 1024;
    for (let off = 0; off < LARGE_FILE_SIZE; off += chunk) {
      const bytes = largeFileBytes(off, chunk);
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
    }
  } finally {
    file.close();
  }
}
