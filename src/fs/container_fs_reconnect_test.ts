// ContainerFs over a link whose connection is replaced (a redeployed satellite): handles are
// reopened on the same inode, answer ESTALE otherwise, and never reach another satellite.

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { EIO, ESTALE, isErrno } from "../fuse/mod.ts";
import type { Errno } from "../fuse/mod.ts";
import { O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY } from "../linux/mod.ts";
import { METHODS, openFlagsToWire, type RpcCalls } from "../protocol/mod.ts";
import { ContainerFs } from "./container_fs.ts";
import type { RpcLink } from "./rpc_link.ts";
import { fail, fakeContext, fakeLogger, fakeNode, FakeRpc, fakeStat, ok } from "./_fake_rpc.ts";

/** A link over numbered fake satellites; `next()` replaces the current one. */
class FakeLink implements RpcLink {
  readonly satellites: FakeRpc[] = [];
  up = true;
  constructor(readonly make: () => FakeRpc) {
    this.satellites.push(make());
  }
  get generation(): number {
    return this.satellites.length;
  }
  /** Routes each call to the current satellite (as `ReconnectingRpc.call` does). */
  readonly call: RpcCalls = Object.fromEntries(
    Object.keys(METHODS).map((m) => [
      m,
      (p: unknown, o: unknown) =>
        (this.satellites.at(-1)!.call as unknown as Record<
          string,
          (p: unknown, o: unknown) => unknown
        >)[m]!(p, o),
    ]),
  ) as unknown as RpcCalls;
  on(generation: number): RpcCalls {
    if (generation === this.generation && this.up) return this.satellites.at(-1)!.call;
    const dead = new FakeRpc(); // answers nothing useful: EIO for everything
    for (const m of ["read", "write", "release", "fstat", "flush", "open"] as const) {
      dead.on(m, () => fail("EIO"));
    }
    return dead.call;
  }
  connected(): Promise<boolean> {
    return Promise.resolve(this.up);
  }
  next(): FakeRpc {
    const s = this.make();
    this.satellites.push(s);
    return s;
  }
}

const writeInfo = { flags: O_RDWR, writeFlags: 0, lockOwner: 0n };
const releaseInfo = { flags: O_RDWR, releaseFlags: 0, lockOwner: 0n };

function value<T>(result: T | Errno): T {
  if (isErrno(result)) throw new Error(`unexpected ${result.name}`);
  return result;
}

/** A satellite where "f" is inode `ino`, opened handles numbered from `first`. */
function satellite(ino: bigint, first: number, data: string): FakeRpc {
  const rpc = new FakeRpc();
  let next = first;
  rpc.on("lstat", () => ok(fakeStat({ ino, size: 5n })));
  rpc.on("fstat", () => ok(fakeStat({ ino, size: 5n })));
  rpc.on("open", () => ok({ handle: next++ }));
  rpc.on("read", () => ok(new TextEncoder().encode(data)));
  rpc.on("write", (p) => ok(p.data.length));
  rpc.on("release", () => ok(null));
  return rpc;
}

function setup(inodes: bigint[]) {
  const datas = ["first", "second", "third"];
  let made = 0;
  const link = new FakeLink(() => {
    const i = made++;
    return satellite(inodes[i]!, 7 + i * 100, datas[i]!);
  });
  const logger = fakeLogger();
  const fs = new ContainerFs(link, { attrTimeout: 0, entryTimeout: 0, hostArch: "x86_64", logger });
  const root = fakeNode("");
  return { link, fs, root, logger };
}

Deno.test("container fs reconnect: a handle is reopened where the same inode still is", async () => {
  const { link, fs, root } = setup([5n, 5n]);
  const entry = value(await fs.lookup(fakeContext(), root, "f"));
  const node = fakeNode(entry.key!, root, "f");
  const h = value(await fs.open(fakeContext(), node, O_RDWR | O_TRUNC | O_CREAT)).handle;
  assertEquals(h.id, 7);
  link.next();
  fs.reconnected();
  const data = value(await fs.read(fakeContext(), node, h, 0, 10));
  assertEquals(new TextDecoder().decode(data), "second");
  const second = link.satellites[1]!;
  assertEquals(second.methods(), ["open", "fstat", "read"]);
  // Reopened without creating or truncating.
  assertEquals(second.paramsOf("open")[0]!.flags, openFlagsToWire(O_RDWR, "x86_64"));
  assertEquals(second.paramsOf("read")[0]!.handle, 107);
  assertEquals(await fs.write(fakeContext(), node, h, 0, new Uint8Array(3), writeInfo), 3);
  assertEquals(second.paramsOf("write")[0]!.handle, 107);
});

Deno.test("container fs reconnect: another inode at the path → ESTALE, never its data", async () => {
  const { link, fs, root, logger } = setup([5n, 6n]);
  const node = fakeNode(value(await fs.lookup(fakeContext(), root, "f")).key!, root, "f");
  const h = value(await fs.open(fakeContext(), node, O_RDONLY)).handle;
  link.next();
  fs.reconnected();
  assertEquals(await fs.read(fakeContext(), node, h, 4096, 10), ESTALE);
  assertEquals(await fs.read(fakeContext(), node, h, 4096, 10), ESTALE);
  const second = link.satellites[1]!;
  assertEquals(second.methods(), ["open", "fstat", "release"], "the other file was read");
  assertEquals(second.paramsOf("release")[0]!.handle, 107, "the probe handle is closed");
  assert(
    logger.lines.some((l) => /Cannot reopen '\/f'.*another file.*ESTALE/.test(l)),
    logger.lines.join("\n"),
  );
  // Its release does not close anything of the new satellite.
  await fs.release(fakeContext(), node, h, releaseInfo);
  assertEquals(second.paramsOf("release").length, 1);
});

Deno.test("container fs reconnect: no connection within the grace period → EIO, tried again later", async () => {
  const { link, fs, root } = setup([5n, 5n]);
  const node = fakeNode(value(await fs.lookup(fakeContext(), root, "f")).key!, root, "f");
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  link.up = false;
  assertEquals(await fs.write(fakeContext(), node, h, 0, new Uint8Array(3), writeInfo), EIO);
  assertEquals(link.satellites[0]!.paramsOf("write").length, 0);
  link.next();
  link.up = true;
  fs.reconnected();
  assertEquals(await fs.write(fakeContext(), node, h, 0, new Uint8Array(3), writeInfo), 3);
  assertEquals(link.satellites[1]!.paramsOf("write")[0]!.handle, 107);
});

Deno.test("container fs reconnect: writes lost with the satellite are reported by the next call", async () => {
  const { link, fs, root } = setup([5n, 5n]);
  const node = fakeNode(value(await fs.lookup(fakeContext(), root, "f")).key!, root, "f");
  const h = value(await fs.open(fakeContext(), node, O_WRONLY)).handle;
  // Early-answered, then the satellite dies with it unanswered (the client fails it with EIO).
  link.satellites[0]!.on("write", () => fail("EIO"));
  assertEquals(await fs.write(fakeContext(), node, h, 0, new Uint8Array(3), writeInfo), 3);
  link.next();
  fs.reconnected();
  await new Promise((r) => setTimeout(r, 0));
  assertEquals(await fs.write(fakeContext(), node, h, 3, new Uint8Array(3), writeInfo), EIO);
  assertEquals(await fs.write(fakeContext(), node, h, 3, new Uint8Array(3), writeInfo), 3);
});

Deno.test("container fs reconnect: revalidate hands over the nodes whose path holds another inode", async () => {
  const { link, fs, root } = setup([5n, 6n, 6n]);
  const node = fakeNode(value(await fs.lookup(fakeContext(), root, "f")).key!, root, "f");
  value(await fs.getattr(fakeContext(), node, undefined));
  link.next(); // "f" is inode 6 there
  fs.reconnected();
  const changed: string[] = [];
  const record = (n: typeof node): Promise<void> => {
    changed.push(n.path!);
    return Promise.resolve();
  };
  assertEquals(await fs.revalidate(record), 1);
  assertEquals(changed, ["/f"]);
  // A node of the inode that is there now stays.
  const again = fakeNode(value(await fs.lookup(fakeContext(), root, "f")).key!, root, "f");
  value(await fs.getattr(fakeContext(), again, undefined));
  link.next();
  fs.reconnected();
  assertEquals(await fs.revalidate(record), 0);
  assertEquals(changed, ["/f"]);
});
