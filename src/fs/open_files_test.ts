import { deepStrictEqual } from "node:assert/strict";
import { MountChanges } from "./mount_changes.ts";
import { type OpenFile, OpenFiles } from "./open_files.ts";

function setup(ttlMs = 1000): {
  files: OpenFiles<OpenFile>;
  changes: MountChanges;
  clock: { now: number };
} {
  const changes = new MountChanges();
  const clock = { now: 1000 };
  return { files: new OpenFiles(changes, { ttlMs, now: () => clock.now }), changes, clock };
}

const bytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i);

Deno.test("open files: handles are found by inode until removed", () => {
  const { files } = setup();
  const a = files.add({ key: "k" });
  const b = files.add({ key: "k" });
  files.add({ key: "other" });
  deepStrictEqual(files.of("k"), [a, b]);
  deepStrictEqual(files.any("k"), a);
  files.remove(a);
  files.remove(b);
  deepStrictEqual([files.of("k"), files.any("k")], [[], undefined]);
});

Deno.test("open files: a read-ahead serves the reads it holds, within its time", () => {
  const { files, clock } = setup();
  const h = files.add({ key: "k" });
  files.keepReadAhead(h, bytes(8), 8, files.mark());
  deepStrictEqual(files.read(h, 2, 4), bytes(8).subarray(2, 6));
  deepStrictEqual(files.read(h, 4, 8), undefined, "beyond it, and the file may go on");
  clock.now += 1000;
  deepStrictEqual(files.read(h, 0, 4), undefined, "expired");
  deepStrictEqual(h.readAhead, undefined);
});

Deno.test("open files: a short read-ahead is the whole file", () => {
  const { files } = setup();
  const h = files.add({ key: "k" });
  files.keepReadAhead(h, bytes(5), 8, files.mark());
  deepStrictEqual(files.read(h, 2, 100), bytes(5).subarray(2));
  deepStrictEqual(files.read(h, 5, 100), new Uint8Array(0), "end of file");
  deepStrictEqual(files.read(h, 6, 100), undefined);
});

Deno.test("open files: a change drops the inode's read-ahead; one raced by a change is not kept", () => {
  const { files, changes } = setup();
  const a = files.add({ key: "k" });
  const b = files.add({ key: "k" });
  const c = files.add({ key: "other" });
  for (const h of [a, b, c]) files.keepReadAhead(h, bytes(4), 8, files.mark());
  files.changed("k");
  deepStrictEqual([a.readAhead, b.readAhead, c.readAhead !== undefined], [
    undefined,
    undefined,
    true,
  ]);
  const mark = files.mark();
  changes.note();
  files.keepReadAhead(a, bytes(4), 8, mark);
  deepStrictEqual(a.readAhead, undefined);
});

Deno.test("open files: no read-ahead is kept without an attribute timeout", () => {
  const { files } = setup(0);
  const h = files.add({ key: "k" });
  files.keepReadAhead(h, bytes(4), 8, files.mark());
  deepStrictEqual(files.read(h, 0, 4), undefined);
});
