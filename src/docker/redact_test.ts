import { strictEqual } from "node:assert/strict";
import { redact } from "./config.ts";

Deno.test("redact hides a password whatever characters it holds", () => {
  strictEqual(redact("tcp://u:pw@h:1"), "tcp://u:***@h:1");
  strictEqual(redact("tcp://u:pa/ss@h:2376"), "tcp://u:***@h:2376");
  strictEqual(redact("tcp://u:p@ss@h:2376"), "tcp://u:***@h:2376");
  strictEqual(redact("tcp://u:a/b@c/d@h:2376/"), "tcp://u:***@h:2376/");
  strictEqual(redact("TCP://u:s3cret@h"), "TCP://u:***@h");
  strictEqual(redact("ssh://u:pw@h/run/docker.sock"), "ssh://u:***@h/run/docker.sock");
});

Deno.test("redact leaves addresses without a password alone", () => {
  for (
    const address of [
      "tcp://h:2376",
      "tcp://[::1]:2376",
      "ssh://u@h:22",
      "ssh://u@h/var/run/docker.sock",
      "unix:///var/run/docker.sock",
      "tcp://h:2376/a",
    ]
  ) {
    strictEqual(redact(address), address);
  }
});
