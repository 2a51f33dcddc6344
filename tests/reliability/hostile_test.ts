// Hostile names and paths through a real mount: newlines, invalid UTF-8, 255/256-byte names,
// paths up to and past PATH_MAX, and nothing reaching outside `--path`.
// (The protocol decoders' fuzzing lives in tests/satellite/fuzz_test.ts.)

import { deepStrictEqual, ok } from "node:assert/strict";
import { docker, sh, withMount } from "./helpers.ts";

async function inside(container: string, script: string): Promise<string> {
  return (await docker(["exec", container, "sh", "-c", script])).stdout;
}

Deno.test("names with newlines round-trip both ways", async () => {
  await withMount("musl", async (m) => {
    const r = await sh(m.mountpoint, 'nl="$M/data/new\nline"; echo one > "$nl" && cat "$nl"');
    deepStrictEqual(r.stdout, "one\n", r.stderr);
    deepStrictEqual(await inside(m.container, 'cat "/data/new\nline"'), "one\n");
    await inside(m.container, 'echo two > "/data/x\n\ty"');
    const ls = await sh(m.mountpoint, 'ls -A "$M/data" | od -An -c | tr -s " "');
    ok(ls.stdout.includes("x \\n \\t y"), ls.stdout);
    const cat = await sh(m.mountpoint, 'cat "$M/data/x\n\ty" && rm "$M/data/x\n\ty"');
    deepStrictEqual(cat.stdout, "two\n", cat.stderr);
  });
});

// The FUSE layer hands names to the filesystem as strings, so names that are not UTF-8 cannot be
// served (see the README's Reliability section): creating one fails with EILSEQ, and such names
// made inside the container are left out of listings; everything else keeps working.
Deno.test("names with invalid UTF-8: EILSEQ from the host, hidden when made inside, no harm", async () => {
  await withMount("musl", async (m) => {
    const r = await sh(m.mountpoint, `echo x > "$M/data/bad$(printf '\\377\\376')name"`);
    ok(r.code !== 0 && /Invalid or incomplete multibyte/.test(r.stderr), r.stderr);
    await inside(
      m.container,
      `echo three > "/data/x$(printf '\\200\\001')y" && echo ok > /data/fine`,
    );
    const ls = await sh(m.mountpoint, 'ls -A "$M/data"');
    deepStrictEqual(ls.code, 0, ls.stderr);
    ok(ls.stdout.split("\n").includes("fine"), ls.stdout);
    ok(ls.stdout.includes("hello.txt"), ls.stdout);
    deepStrictEqual(await Deno.readTextFile(`${m.mountpoint}/data/fine`), "ok\n");
    ok(/not UTF-8/.test(m.stderr()), m.stderr());
  });
});

Deno.test("255-byte names work; 256 bytes give ENAMETOOLONG", async () => {
  await withMount("musl", async (m) => {
    const n255 = "a".repeat(251) + ".txt";
    await Deno.writeTextFile(`${m.mountpoint}/data/${n255}`, "long");
    deepStrictEqual(await inside(m.container, `cat /data/${n255}`), "long");
    await Deno.mkdir(`${m.mountpoint}/data/${"d".repeat(255)}`);
    await Deno.rename(`${m.mountpoint}/data/${n255}`, `${m.mountpoint}/data/${"b".repeat(255)}`);
    for (const op of ["echo x >", "mkdir", "touch"]) {
      const r = await sh(m.mountpoint, `${op} "$M/data/${"c".repeat(256)}"`);
      ok(r.code !== 0 && /File name too long/.test(r.stderr), `${op}: ${r.stderr}`);
    }
    const mv = await sh(
      m.mountpoint,
      `mv "$M/data/${"b".repeat(255)}" "$M/data/${"e".repeat(256)}"`,
    );
    ok(mv.code !== 0 && /File name too long/.test(mv.stderr), mv.stderr);
  });
});

Deno.test("deep paths: up to PATH_MAX in the container work, longer ones give ENAMETOOLONG, the mount survives", async () => {
  await withMount("musl", async (m) => {
    const part = "p".repeat(200);
    // 19 levels of 201 bytes under /data/deep: a container path of 3,829 bytes.
    const rel = Array.from({ length: 19 }, () => part).join("/");
    const r = await sh(
      m.mountpoint,
      `cd "$M/data" && mkdir deep && cd deep && for i in $(seq 19); do mkdir ${part} && cd ${part}; done && echo deep > f && cat f`,
    );
    deepStrictEqual(r.stdout, "deep\n", r.stderr);
    deepStrictEqual(await inside(m.container, `cat /data/deep/${rel}/f`), "deep\n");
    // Two levels more take the container-side path past 4,096 bytes: it works or fails cleanly.
    const past = await sh(
      m.mountpoint,
      `cd "$M/data/deep" && for i in $(seq 19); do cd ${part}; done && ` +
        `mkdir -p ${part}/${part} && echo x > ${part}/${part}/g && cat ${part}/${part}/g`,
    );
    ok(
      past.stdout === "x\n" || /File name too long/.test(past.stderr),
      `${past.code}: ${past.stdout} ${past.stderr}`,
    );
    // A host path longer than PATH_MAX is refused by the host kernel.
    const long = await sh(m.mountpoint, `cat "$M/data/deep/${rel}/${part}/${part}/g"`);
    ok(long.code !== 0 && /File name too long/.test(long.stderr), long.stderr);
    // The mount still answers.
    deepStrictEqual(await Deno.readTextFile(`${m.mountpoint}/data/hello.txt`), "hello from musl\n");
    console.log(
      `  beyond PATH_MAX in the container: ${past.code === 0 ? "works" : "ENAMETOOLONG"}`,
    );
  });
});

Deno.test("--path: '..' and symlinks never reach outside the mounted subtree", async () => {
  await withMount("musl", async (m) => {
    const id = m.container;
    await docker([
      "exec",
      id,
      "sh",
      "-c",
      "echo secret > /secret && mkdir -p /data/sub && " +
      "ln -s ../secret /data/rel && ln -s /secret /data/abs && ln -s ../../secret /data/sub/up",
    ]);
    deepStrictEqual(await Deno.readTextFile(`${m.mountpoint}/hello.txt`), "hello from musl\n");
    for (const path of ["../secret", "sub/../../secret", "rel", "abs", "sub/up", "./../secret"]) {
      const r = await sh(m.mountpoint, `cat "$M/${path}" 2>&1`);
      ok(
        !r.stdout.includes("secret\n") || r.stdout.includes("No such"),
        `${path}: ${r.stdout}`,
      );
    }
    // Symlinks are shown as they are, not resolved in the container.
    deepStrictEqual(await Deno.readLink(`${m.mountpoint}/rel`), "../secret");
    // The parent of the mount's root is the host's, not the container's "/".
    const up = await sh(m.mountpoint, 'ls -A "$M/.." | grep -c "^secret$"');
    deepStrictEqual(up.stdout.trim(), "0");
  }, { args: ["--path", "/data"] });
});
