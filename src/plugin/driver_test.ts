import { deepStrictEqual, ok, rejects } from "node:assert/strict";
import type { Logger } from "../fuse/mod.ts";
import type { ContainerMountOptions, MountEnding } from "../mount/mod.ts";
import { mountOptions } from "../mount/options.ts";
import { type LiveMount, VolumeDriver, VolumeError } from "./driver.ts";
import { handlePluginRequest } from "./http.ts";
import { JsonFileStore, parseStore, type VolumeRecord, type VolumeStore } from "./store.ts";

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const NOW = new Date("2026-01-02T03:04:05.000Z");

class MemoryStore implements VolumeStore {
  saved: VolumeRecord[][] = [];
  constructor(private initial: VolumeRecord[] = []) {}
  load(): Promise<VolumeRecord[]> {
    return Promise.resolve(structuredClone(this.initial));
  }
  save(records: readonly VolumeRecord[]): Promise<void> {
    this.saved.push(structuredClone([...records]));
    return Promise.resolve();
  }
  get last(): VolumeRecord[] {
    return this.saved.at(-1) ?? [];
  }
}

/** A fake of mountContainer: records mounts; each can be ended from the test. */
class FakeMounts {
  calls: ContainerMountOptions[] = [];
  closed = 0;
  fail?: string;
  #enders: ((e: MountEnding) => void)[] = [];
  readonly mount = (options: ContainerMountOptions): Promise<LiveMount> => {
    if (this.fail) return Promise.reject(new Error(this.fail));
    this.calls.push(options);
    let end!: (e: MountEnding) => void;
    const ended = new Promise<MountEnding>((resolve) => end = resolve);
    this.#enders.push(end);
    return Promise.resolve({
      readyMs: 1,
      ended,
      close: () => {
        this.closed++;
        end({ kind: "closed" });
        return Promise.resolve();
      },
    });
  };
  /** Ends the latest mount as if the container went away. */
  lose(): void {
    this.#enders.at(-1)?.({ kind: "lost", reason: "container stopped" });
  }
}

async function withDriver(
  fn: (d: VolumeDriver, mounts: FakeMounts, store: MemoryStore, dir: string) => Promise<void>,
  initial: VolumeRecord[] = [],
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-driver-" });
  const store = new MemoryStore(initial);
  const mounts = new FakeMounts();
  try {
    const driver = await VolumeDriver.open({
      store,
      mount: mounts.mount,
      volumesDir: dir,
      now: () => NOW,
      logger: quiet,
    });
    await fn(driver, mounts, store, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("driver: create validates options and persists the definition", async () => {
  await withDriver(async (d, _m, store) => {
    await rejects(d.create("v", {}), /'container' is required/);
    await rejects(d.create("v", { container: "web", color: "red" }), /unknown option 'color'/);
    await rejects(d.create("v", { container: "web", path: "etc" }), /absolute path/);
    await rejects(d.create("v", { container: "web", readonly: "maybe" }), /true or false/);
    await rejects(d.create("../x", { container: "web" }), /invalid volume name/);
    await d.create("v", { container: "web", path: "/srv", readonly: "true" });
    deepStrictEqual(store.last, [{
      name: "v",
      container: "web",
      path: "/srv",
      readOnly: true,
      createdAt: NOW.toISOString(),
      mountIds: [],
    }]);
    await d.create("v", { container: "web", path: "/srv", readonly: "1" }); // same: accepted
    await rejects(d.create("v", { container: "db" }), /already exists with other options/);
  });
});

Deno.test("driver: mounts are reference-counted by caller ID", async () => {
  await withDriver(async (d, mounts, store, dir) => {
    await d.create("v", { container: "web" });
    deepStrictEqual(await d.mount("v", "c1"), `${dir}/v`);
    deepStrictEqual(await d.mount("v", "c2"), `${dir}/v`);
    deepStrictEqual(await d.mount("v", "c2"), `${dir}/v`);
    deepStrictEqual(mounts.calls.length, 1);
    deepStrictEqual(mounts.calls[0], mountOptions("web", `${dir}/v`, { allowOther: true }));
    deepStrictEqual(store.last[0]!.mountIds, ["c1", "c2"]);
    await d.unmount("v", "c1");
    deepStrictEqual(mounts.closed, 0);
    await d.unmount("v", "c2");
    deepStrictEqual(mounts.closed, 1);
    await rejects(Deno.stat(`${dir}/v`), Deno.errors.NotFound);
    deepStrictEqual(d.get("v").Status.mounted, false);
    await d.remove("v");
    deepStrictEqual(store.last, []);
    await rejects(d.mount("v", "c3"), VolumeError);
  });
});

Deno.test("driver: remove drops stale callers (dockerd removes only unused volumes)", async () => {
  await withDriver(async (d, mounts, store, dir) => {
    await d.create("v", { container: "web" });
    await d.mount("v", "lost-while-the-plugin-was-down");
    await d.remove("v");
    deepStrictEqual(mounts.closed, 1);
    deepStrictEqual(store.last, []);
    await rejects(Deno.stat(`${dir}/v`), Deno.errors.NotFound);
  });
});

Deno.test("driver: a failed mount is reported and not counted", async () => {
  await withDriver(async (d, mounts, store) => {
    await d.create("v", { container: "gone" });
    mounts.fail = "Cannot mount 'x': container not found";
    await rejects(d.mount("v", "c1"), /Cannot mount volume 'v' of container 'gone'.*not found/);
    deepStrictEqual(store.last[0]!.mountIds, []);
  });
});

Deno.test("driver: a lost mount is mounted again by the next caller", async () => {
  await withDriver(async (d, mounts) => {
    await d.create("v", { container: "web" });
    await d.mount("v", "c1");
    mounts.lose();
    await new Promise((r) => setTimeout(r, 0));
    deepStrictEqual(d.get("v").Status.mounted, false);
    await d.mount("v", "c2");
    deepStrictEqual(mounts.calls.length, 2);
  });
});

Deno.test("driver: restore re-mounts volumes with callers; shutdown closes them", async () => {
  const records: VolumeRecord[] = [
    { name: "a", container: "web", path: "/", readOnly: false, createdAt: "x", mountIds: ["c"] },
    { name: "b", container: "db", path: "/", readOnly: true, createdAt: "x", mountIds: [] },
  ];
  await withDriver(async (d, mounts, store) => {
    deepStrictEqual(d.list().map((v) => v.Name), ["a", "b"]);
    await d.restore();
    deepStrictEqual(mounts.calls.map((c) => c.container), ["web"]);
    await d.shutdown();
    deepStrictEqual(mounts.closed, 1);
    deepStrictEqual(store.saved.length, 0, "shutdown keeps the callers persisted");
  }, records);
});

Deno.test("driver: operations on one volume run one after the other", async () => {
  await withDriver(async (d, mounts) => {
    await d.create("v", { container: "web" });
    await Promise.all([d.mount("v", "1"), d.mount("v", "2"), d.unmount("v", "1")]);
    deepStrictEqual(mounts.calls.length, 1);
    deepStrictEqual(d.get("v").Status.callers, 1);
  });
});

async function call(d: VolumeDriver, endpoint: string, body?: unknown): Promise<unknown> {
  const response = await handlePluginRequest(
    d,
    new Request(`http://plugin${endpoint}`, {
      method: "POST",
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
    quiet,
  );
  deepStrictEqual(response.headers.get("content-type"), "application/vnd.docker.plugins.v1.2+json");
  return await response.json();
}

Deno.test("http: the plugin protocol endpoints", async () => {
  await withDriver(async (d, _m, _s, dir) => {
    deepStrictEqual(await call(d, "/Plugin.Activate"), { Implements: ["VolumeDriver"] });
    deepStrictEqual(await call(d, "/VolumeDriver.Capabilities", {}), {
      Capabilities: { Scope: "local" },
    });
    deepStrictEqual(await call(d, "/VolumeDriver.Create", { Name: "v", Opts: null }), {
      Err: "the option 'container' is required (-o container=NAME)",
    });
    deepStrictEqual(
      await call(d, "/VolumeDriver.Create", { Name: "v", Opts: { container: "web" } }),
      { Err: "" },
    );
    deepStrictEqual(await call(d, "/VolumeDriver.Mount", { Name: "v", ID: "c" }), {
      Mountpoint: `${dir}/v`,
      Err: "",
    });
    deepStrictEqual(await call(d, "/VolumeDriver.Path", { Name: "v" }), {
      Mountpoint: `${dir}/v`,
      Err: "",
    });
    const got = await call(d, "/VolumeDriver.Get", { Name: "v" }) as {
      Volume: { Name: string; CreatedAt: string; Status: { mounted: boolean } };
    };
    deepStrictEqual(got.Volume.Name, "v");
    deepStrictEqual(got.Volume.CreatedAt, NOW.toISOString());
    deepStrictEqual(got.Volume.Status.mounted, true);
    const list = await call(d, "/VolumeDriver.List", {}) as { Volumes: { Name: string }[] };
    deepStrictEqual(list.Volumes.map((v) => v.Name), ["v"]);
    deepStrictEqual(await call(d, "/VolumeDriver.Unmount", { Name: "v", ID: "c" }), { Err: "" });
    deepStrictEqual(await call(d, "/VolumeDriver.Remove", { Name: "v" }), { Err: "" });
    const missing = await call(d, "/VolumeDriver.Get", { Name: "v" }) as { Err: string };
    ok(missing.Err.includes("no such volume"));
    const unknown = await call(d, "/VolumeDriver.Frobnicate", {}) as { Err: string };
    ok(unknown.Err.includes("unknown endpoint"));
  });
});

Deno.test("http: a body that is not a JSON object is an error, not a crash", async () => {
  await withDriver(async (d) => {
    for (const text of ["{", "[1]", "null", "\u0000"]) {
      const response = await handlePluginRequest(
        d,
        new Request("http://plugin/VolumeDriver.Create", { method: "POST", body: text }),
        quiet,
      );
      deepStrictEqual(response.status, 400);
      ok(((await response.json()) as { Err: string }).Err.length > 0);
    }
  });
});

Deno.test("store: atomic JSON file round trip; hostile content is rejected", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dockerfuse-store-" });
  try {
    const store = new JsonFileStore(`${dir}/state/volumes.json`);
    deepStrictEqual(await store.load(), []);
    const record: VolumeRecord = {
      name: "v",
      container: "web",
      path: "/",
      readOnly: false,
      createdAt: NOW.toISOString(),
      mountIds: ["a"],
    };
    await store.save([record]);
    deepStrictEqual(await store.load(), [record]);
    deepStrictEqual([...Deno.readDirSync(`${dir}/state`)].map((e) => e.name), ["volumes.json"]);
    for (
      const text of [
        "",
        "{",
        "[]",
        '{"version":2,"volumes":[]}',
        '{"version":1}',
        '{"version":1,"volumes":[{"name":1}]}',
        '{"version":1,"volumes":[null]}',
      ]
    ) {
      ok("error" in parseStore(text), text);
    }
    await Deno.writeTextFile(`${dir}/state/volumes.json`, "{");
    await rejects(store.load(), /Cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
