// Issue 14, "a slow call never blocks a fast one": small requests answer while a 256 MiB file
// streams through the mount, and while a read hangs inside the container.

import { ok } from "node:assert/strict";
import { mount } from "../../src/fuse/mod.ts";
import type { Node, RequestContext } from "../../src/fuse/mod.ts";
import { ensureTestBed, removeTestContainer, startTestContainer } from "../../tasks/testbed/mod.ts";
import { measureWhileStreaming } from "../../tasks/bench/busy.ts";
import { MemFs } from "../fuse/memfs.ts";
import { STALL_MS } from "../../satellite/workers.ts";
import { docker, sh, withMount } from "./harness.ts";

/** The acceptance line: median of the samples, milliseconds (see the README's Performance). */
const BUSY_MEDIAN_MS = 100;
const SAMPLES = 20;

Deno.test({
  name:
    `e2e: stat + ls /usr/bin answer in <= ${BUSY_MEDIAN_MS} ms (median of ${SAMPLES}) while 256 MiB streams`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await withMount("glibc", async (m) => {
      await docker([
        "exec",
        m.container,
        "sh",
        "-c",
        "head -c 256M /dev/urandom > /big.bin && sync",
      ]);
      const r = await measureWhileStreaming({
        big: `${m.mountpoint}/big.bin`,
        stat: `${m.mountpoint}/etc/hostname`,
        list: `${m.mountpoint}/usr/bin`,
        samples: SAMPLES,
      });
      const figures = `samples ${r.ms.map((x) => x.toFixed(0)).join(" ")} ms; median ${
        r.median.toFixed(1)
      } ms; ${r.passes} full cat passes meanwhile`;
      console.log(figures);
      ok(r.passes >= 1, `the stream made no progress while sampling: ${figures}`);
      // Timed, as the acceptance demands: a median over 20 trials on a shared machine.
      ok(r.median <= BUSY_MEDIAN_MS, `stat + ls too slow while streaming: ${figures}`);
    });
  },
});

/** A MemFs whose file "gated" answers reads only once `open()` is called. */
class GatedFs extends MemFs {
  #open: () => void = () => {};
  #gate = new Promise<void>((resolve) => (this.#open = resolve));
  /** Reads of "gated" waiting at the gate. */
  waiting = 0;

  openGate(): void {
    this.#open();
  }

  override read(
    ctx: RequestContext,
    node: Node,
    handle: Parameters<MemFs["read"]>[2],
    offset: number,
    size: number,
  ): ReturnType<MemFs["read"]> {
    if (node.name !== "gated") return super.read(ctx, node, handle, offset, size);
    this.waiting++;
    return this.#gate.then(() => {
      this.waiting--;
      return super.read(ctx, node, handle, offset, size);
    }) as unknown as ReturnType<MemFs["read"]>;
  }
}

Deno.test({
  name:
    "e2e: a read hanging inside the container does not stop stat and ls; it ends once unblocked",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    // The hanging file: a FUSE file system served by this test on the host, bind-mounted into
    // the container as /slow (a "network file" whose server stops answering).
    const host = await Deno.makeTempDir({ prefix: "dockerfuse-e2e-slow-" });
    const gated = new GatedFs({ rootMode: 0o755 });
    const session = await mount(gated, host, { fsName: "dockerfuse-e2e-slow" });
    const bed = await ensureTestBed({ kinds: ["glibc"] });
    let container: string | undefined;
    try {
      await Deno.writeTextFile(`${host}/gated`, "behind the gate\n");
      container = await startTestContainer(bed, "glibc", { runArgs: ["-v", `${host}:/slow`] });
      await withMount("glibc", async (m) => {
        const M = m.mountpoint;
        const cat = new Deno.Command("cat", {
          args: [`${M}/slow/gated`],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const catOut = cat.output();
        const deadline = Date.now() + 20_000;
        while (gated.waiting === 0) {
          ok(Date.now() < deadline, "the container's read never reached the gated file");
          await new Promise((r) => setTimeout(r, 20));
        }
        // The satellite is now inside a pread(2) that does not return.
        const t0 = performance.now();
        const r = await sh(M, 'stat "$M/etc/hostname" >/dev/null && ls "$M/usr/bin" | wc -l');
        const ms = performance.now() - t0;
        ok(r.code === 0 && Number(r.stdout) > 50, `stat + ls failed: ${r.stderr}`);
        // Bounded: without the I/O worker they wait for the hung read (the request timeout, 30 s).
        ok(ms < 5_000, `stat + ls took ${ms.toFixed(0)} ms while a read hung`);
        // Reads of other files: once the hung read has run past STALL_MS, a second I/O worker
        // takes them.
        await new Promise((r) => setTimeout(r, STALL_MS + 200));
        const other = await sh(M, 'cat "$M/etc/hostname" "$M/data/hello.txt"');
        ok(other.code === 0 && other.stdout.includes("hello from glibc"), other.stderr);
        // Writes stay on the main thread: they answer too.
        const w = await sh(M, 'echo new > "$M/tmp/written" && stat -c %s "$M/tmp/written"');
        ok(w.code === 0 && w.stdout === "4\n", `a write while a read hung: ${w.stderr}`);
        ok(gated.waiting > 0, "the read was answered before the gate opened");
        gated.openGate();
        const done = await catOut;
        ok(done.success, new TextDecoder().decode(done.stderr));
        ok(new TextDecoder().decode(done.stdout) === "behind the gate\n");
        console.log(`stat + ls while a read hung: ${ms.toFixed(0)} ms`);
      }, { container });
    } finally {
      gated.openGate();
      if (container) await removeTestContainer(bed, container);
      await session.unmount({ lazy: true });
      await Deno.remove(host).catch(() => {});
    }
  },
});
