// Aborting a FUSE connection (abort(), the volume plugin's stop with a busy consumer) works
// whether fusectl is mounted or not, and leaves the host's fusectl state as it found it. Each
// case runs in a mount namespace of its own, so the machine's own state is never changed.

import { deepStrictEqual, equal } from "node:assert/strict";

const CHILD = new URL("./fusectl_child.ts", import.meta.url).pathname;

interface ChildReport {
  aborted: boolean;
  readError: string;
  before: { mounts: string[]; dirs: string[] };
  after: { mounts: string[]; dirs: string[] };
}

async function inNamespace(state: "mounted" | "unmounted"): Promise<ChildReport> {
  if (Deno.uid() !== 0) throw new Error("the fusectl tests need root (mount namespaces, mount)");
  const out = await new Deno.Command("unshare", {
    args: ["--mount", "--propagation", "private", Deno.execPath(), "run", "-A", CHILD, state],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) {
    throw new Error(`the fusectl child failed (${out.code}):\n${stdout}\n${stderr}`);
  }
  return JSON.parse(stdout.split("\n").pop()!) as ChildReport;
}

Deno.test("fusectl: abort() ends a session with an open file where fusectl is not mounted", async () => {
  const report = await inNamespace("unmounted");
  deepStrictEqual(report.before.mounts, []);
  equal(report.aborted, true);
  equal(report.readError, "ENOTCONN");
  // The private fusectl mount made for the abort is gone again, and so is its directory.
  deepStrictEqual(report.after, report.before);
});

Deno.test("fusectl: abort() uses a mounted fusectl and leaves it mounted", async () => {
  const report = await inNamespace("mounted");
  deepStrictEqual(report.before.mounts, ["/sys/fs/fuse/connections"]);
  equal(report.aborted, true);
  equal(report.readError, "ENOTCONN");
  deepStrictEqual(report.after, report.before);
});
