import { buildTar, readTar } from "./tar.ts";

function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

const encode = (s: string): Uint8Array => new TextEncoder().encode(s);

async function gnuTarList(archive: Uint8Array): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/a.tar`, archive);
    const output = await new Deno.Command("tar", {
      args: ["--numeric-owner", "-tvf", `${dir}/a.tar`],
    }).output();
    assert(output.success, new TextDecoder().decode(output.stderr));
    return new TextDecoder().decode(output.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tar: GNU tar lists directories and files with modes, owners and sizes", async () => {
  const archive = buildTar([
    { path: ".dockerfuse-x", type: "directory", mode: 0o700 },
    { path: ".dockerfuse-x/lib", type: "directory", mode: 0o700, uid: 1000, gid: 1001 },
    { path: ".dockerfuse-x/deno", type: "file", mode: 0o700, data: encode("#!binary") },
    { path: ".dockerfuse-x/lib/x.js", type: "file", mode: 0o600, data: encode("") },
  ]);
  assert(archive.length % 512 === 0);
  const lines = (await gnuTarList(archive)).trim().split("\n");
  assert(lines.length === 4, lines.join("\n"));
  assert(/^drwx------ 0\/0 +0 .* \.dockerfuse-x\/$/.test(lines[0]), lines[0]);
  assert(/^drwx------ 1000\/1001 +0 .* \.dockerfuse-x\/lib\/$/.test(lines[1]), lines[1]);
  assert(/^-rwx------ 0\/0 +8 .* \.dockerfuse-x\/deno$/.test(lines[2]), lines[2]);
  assert(/^-rw------- 0\/0 +0 .* \.dockerfuse-x\/lib\/x\.js$/.test(lines[3]), lines[3]);
});

Deno.test("tar: long paths use the ustar prefix or a pax header, and contents survive", async () => {
  const mid = `${"d".repeat(90)}/${"e".repeat(90)}/file.txt`;
  const long = `${"a".repeat(120)}${"b".repeat(120)}`;
  const archive = buildTar([
    { path: mid, type: "file", mode: 0o644, data: encode("mid") },
    { path: long, type: "file", mode: 0o644, data: encode("long") },
  ]);
  const listing = await gnuTarList(archive);
  assert(listing.includes(mid), listing);
  assert(listing.includes(long), listing);
  const files = readTar(archive);
  const midFile = files.find((f) => f.path === mid);
  assert(midFile !== undefined && new TextDecoder().decode(midFile.data) === "mid");
});

Deno.test("tar: file contents round-trip through the reader at block boundaries", () => {
  for (const size of [0, 1, 511, 512, 513, 4096 + 7]) {
    const data = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    const files = readTar(buildTar([{ path: "f", type: "file", mode: 0o600, data }]));
    assert(files.length === 1 && files[0].data.length === size, `size ${size}`);
    assert(files[0].data.every((b, i) => b === data[i]), `content ${size}`);
  }
});

Deno.test("tar: unclean paths are refused", () => {
  for (const path of ["", "/abs", "a/../b", "a/./b", "a//b", "a/", "x\0y"]) {
    let threw = false;
    try {
      buildTar([{ path, type: "file", mode: 0o600 }]);
    } catch (error) {
      threw = error instanceof RangeError;
    }
    assert(threw, `accepted '${path}'`);
  }
});

Deno.test("tar: the reader never throws on truncated or corrupt archives", () => {
  const archive = buildTar([{
    path: "f",
    type: "file",
    mode: 0o600,
    data: encode("x".repeat(900)),
  }]);
  for (let cut = 0; cut < archive.length; cut += 97) readTar(archive.subarray(0, cut));
  const corrupt = archive.slice();
  corrupt.fill(0x39, 124, 136); // size field of non-octal digits
  readTar(corrupt);
  readTar(new Uint8Array(512).fill(0xff));
});
