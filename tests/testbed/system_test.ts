import { deepStrictEqual } from "node:assert/strict";
import { parseMirror } from "../../tasks/testbed/system.ts";

Deno.test("parseMirror: deb822 stanza serving the suite", () => {
  const text = [
    "Types: deb",
    "# http://snapshot.debian.org/archive/debian/20250520T000000Z",
    "URIs: http://mirror.example/debian",
    "Suites: bookworm bookworm-updates",
    "Components: main",
    "",
    "Types: deb",
    "URIs: http://security.example/debian-security",
    "Suites: bookworm-security",
  ].join("\n");
  deepStrictEqual(parseMirror([text], "bookworm"), "http://mirror.example/debian");
  deepStrictEqual(
    parseMirror([text], "bookworm-security"),
    "http://security.example/debian-security",
  );
});

Deno.test("parseMirror: one-line format, options, other suites and disabled stanzas", () => {
  const lines = [
    "deb https://packages.example/apt cloud-sdk-bookworm main",
    "# deb http://commented.example/debian bookworm main",
    "deb-src http://src.example/debian bookworm main",
    "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main",
  ].join("\n");
  deepStrictEqual(parseMirror([lines], "bookworm"), "http://one.example/debian");
  const disabled = "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n";
  deepStrictEqual(parseMirror([disabled, lines], "bookworm"), "http://one.example/debian");
  const source = "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n";
  deepStrictEqual(parseMirror([source], "bookworm"), undefined);
});

Deno.test("parseMirror: hostile or empty input gives undefined", () => {
  deepStrictEqual(parseMirror([], "bookworm"), undefined);
  deepStrictEqual(
    parseMirror(["", "\n\n\n", "deb", "URIs:\nSuites:", "\u0000\uffff"], "bookworm"),
    undefined,
  );
});
