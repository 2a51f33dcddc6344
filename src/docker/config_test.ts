import { redact, resolveEngineConfig } from "./config.ts";
import { DockerError } from "./errors.ts";

function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A fake home: files keyed by absolute path. */
function files(map: Record<string, string>): (path: string) => string | undefined {
  return (path) => map[path];
}

async function configError(promise: Promise<unknown>): Promise<DockerError> {
  try {
    await promise;
  } catch (error) {
    assert(error instanceof DockerError, String(error));
    return error;
  }
  throw new Error("expected a DockerError");
}

const PEM = {
  ca: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
  cert: "-----BEGIN CERTIFICATE-----\ncert\n-----END CERTIFICATE-----\n",
  key: "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n",
};

Deno.test("config: no settings means the local default socket", async () => {
  const config = await resolveEngineConfig({ env: {}, home: "/h", readTextFile: files({}) });
  assert(config.endpoint.kind === "unix" && config.endpoint.path === "/var/run/docker.sock");
  assert(config.description === "unix:///var/run/docker.sock");
  assert(config.contextName === "default" && config.apiVersion === undefined);
});

Deno.test("config: DOCKER_HOST unix and plain tcp, with default ports", async () => {
  const unix = await resolveEngineConfig({
    env: { DOCKER_HOST: "unix:///run/user/1000/docker.sock" },
    home: "/h",
    readTextFile: files({}),
  });
  assert(unix.endpoint.kind === "unix" && unix.endpoint.path === "/run/user/1000/docker.sock");
  const tcp = await resolveEngineConfig({
    env: { DOCKER_HOST: "tcp://203.0.113.5" },
    home: "/h",
    readTextFile: files({}),
  });
  assert(tcp.endpoint.kind === "tcp" && tcp.endpoint.port === 2375 && !tcp.endpoint.tls);
  const v6 = await resolveEngineConfig({
    env: { DOCKER_HOST: "tcp://[::1]:2377" },
    home: "/h",
    readTextFile: files({}),
  });
  assert(v6.endpoint.kind === "tcp" && v6.endpoint.hostname === "::1" && v6.endpoint.port === 2377);
  assert(v6.description === "tcp://[::1]:2377", v6.description);
});

Deno.test("config: DOCKER_TLS_VERIFY reads DOCKER_CERT_PATH, or ~/.docker by default", async () => {
  const withPath = await resolveEngineConfig({
    env: { DOCKER_HOST: "tcp://127.0.0.1", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: "/certs" },
    home: "/h",
    readTextFile: files({
      "/certs/ca.pem": PEM.ca,
      "/certs/cert.pem": PEM.cert,
      "/certs/key.pem": PEM.key,
    }),
  });
  assert(withPath.endpoint.kind === "tcp" && withPath.endpoint.port === 2376);
  assert(withPath.endpoint.tls?.ca === PEM.ca && withPath.endpoint.tls.key === PEM.key);
  assert(withPath.description === "tcp://127.0.0.1:2376 (TLS)", withPath.description);
  const inHome = await resolveEngineConfig({
    env: { DOCKER_HOST: "tcp://127.0.0.1:3000", DOCKER_TLS_VERIFY: "1" },
    home: "/h",
    readTextFile: files({ "/h/.docker/ca.pem": PEM.ca }),
  });
  assert(inHome.endpoint.kind === "tcp" && inHome.endpoint.port === 3000);
  assert(inHome.endpoint.tls?.ca === PEM.ca && inHome.endpoint.tls.cert === undefined);
});

Deno.test("config: TLS problems are clear config errors", async () => {
  const noCa = await configError(resolveEngineConfig({
    env: { DOCKER_HOST: "tcp://127.0.0.1", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: "/c" },
    home: "/h",
    readTextFile: files({}),
  }));
  assert(noCa.code === "config" && noCa.message.includes("/c/ca.pem"), noCa.message);
  const halfPair = await configError(resolveEngineConfig({
    env: { DOCKER_HOST: "tcp://127.0.0.1", DOCKER_TLS_VERIFY: "1", DOCKER_CERT_PATH: "/c" },
    home: "/h",
    readTextFile: files({ "/c/ca.pem": PEM.ca, "/c/cert.pem": PEM.cert }),
  }));
  assert(halfPair.message.includes("both cert.pem and key.pem"), halfPair.message);
  const noVerify = await configError(resolveEngineConfig({
    env: { DOCKER_HOST: "tcp://127.0.0.1", DOCKER_TLS: "1" },
    home: "/h",
    readTextFile: files({}),
  }));
  assert(noVerify.message.includes("DOCKER_TLS_VERIFY"), noVerify.message);
});

Deno.test("config: bad addresses name the source and hide passwords", async () => {
  const error = await configError(resolveEngineConfig({
    env: { DOCKER_HOST: "ftp://user:secret@host" },
    home: "/h",
    readTextFile: files({}),
  }));
  assert(error.message.includes("DOCKER_HOST"), error.message);
  assert(!error.message.includes("secret"), error.message);
  assert(redact("tcp://u:pw@h:1") === "tcp://u:***@h:1");
  const badVersion = await configError(resolveEngineConfig({
    env: { DOCKER_API_VERSION: "latest" },
    home: "/h",
    readTextFile: files({}),
  }));
  assert(badVersion.message.includes("DOCKER_API_VERSION"));
});

Deno.test("config: DOCKER_API_VERSION is kept", async () => {
  const config = await resolveEngineConfig({
    env: { DOCKER_API_VERSION: "1.41" },
    home: "/h",
    readTextFile: files({}),
  });
  assert(config.apiVersion === "1.41");
});

Deno.test("config: current context from config.json with its TLS material", async () => {
  const hash = await sha256Hex("remote");
  const read = files({
    "/h/.docker/config.json": JSON.stringify({ currentContext: "remote" }),
    [`/h/.docker/contexts/meta/${hash}/meta.json`]: JSON.stringify({
      Name: "remote",
      Endpoints: { docker: { Host: "tcp://127.0.0.1:2376", SkipTLSVerify: false } },
    }),
    [`/h/.docker/contexts/tls/${hash}/docker/ca.pem`]: PEM.ca,
    [`/h/.docker/contexts/tls/${hash}/docker/cert.pem`]: PEM.cert,
    [`/h/.docker/contexts/tls/${hash}/docker/key.pem`]: PEM.key,
  });
  const config = await resolveEngineConfig({ env: {}, home: "/h", readTextFile: read });
  assert(config.contextName === "remote");
  assert(config.endpoint.kind === "tcp" && config.endpoint.tls?.cert === PEM.cert);
  assert(config.description === "tcp://127.0.0.1:2376 (TLS) (context remote)", config.description);
});

Deno.test("config: DOCKER_CONTEXT beats config.json, DOCKER_HOST beats both", async () => {
  const hashA = await sha256Hex("a");
  const hashB = await sha256Hex("b");
  const read = files({
    "/cfg/config.json": JSON.stringify({ currentContext: "a" }),
    [`/cfg/contexts/meta/${hashA}/meta.json`]: JSON.stringify({
      Endpoints: { docker: { Host: "unix:///a.sock" } },
    }),
    [`/cfg/contexts/meta/${hashB}/meta.json`]: JSON.stringify({
      Endpoints: { docker: { Host: "unix:///b.sock" } },
    }),
  });
  const fromFile = await resolveEngineConfig({
    env: { DOCKER_CONFIG: "/cfg" },
    home: "/h",
    readTextFile: read,
  });
  assert(fromFile.endpoint.kind === "unix" && fromFile.endpoint.path === "/a.sock");
  const fromEnv = await resolveEngineConfig({
    env: { DOCKER_CONFIG: "/cfg", DOCKER_CONTEXT: "b" },
    home: "/h",
    readTextFile: read,
  });
  assert(fromEnv.endpoint.kind === "unix" && fromEnv.endpoint.path === "/b.sock");
  const host = await resolveEngineConfig({
    env: { DOCKER_CONFIG: "/cfg", DOCKER_CONTEXT: "b", DOCKER_HOST: "unix:///c.sock" },
    home: "/h",
    readTextFile: read,
  });
  assert(host.endpoint.kind === "unix" && host.endpoint.path === "/c.sock");
  const explicitDefault = await resolveEngineConfig({
    env: { DOCKER_CONFIG: "/cfg", DOCKER_CONTEXT: "default" },
    home: "/h",
    readTextFile: read,
  });
  assert(explicitDefault.endpoint.kind === "unix");
  assert(explicitDefault.endpoint.path === "/var/run/docker.sock");
});

Deno.test("config: unknown contexts and contexts skipping TLS verification are refused", async () => {
  const missing = await configError(resolveEngineConfig({
    env: { DOCKER_CONTEXT: "nope" },
    home: "/h",
    readTextFile: files({}),
  }));
  assert(missing.code === "config" && missing.message.includes("'nope'"), missing.message);
  const hash = await sha256Hex("insecure");
  const insecure = await configError(resolveEngineConfig({
    env: { DOCKER_CONTEXT: "insecure" },
    home: "/h",
    readTextFile: files({
      [`/h/.docker/contexts/meta/${hash}/meta.json`]: JSON.stringify({
        Endpoints: { docker: { Host: "tcp://127.0.0.1:2376", SkipTLSVerify: true } },
      }),
    }),
  }));
  assert(insecure.message.includes("TLS verification"), insecure.message);
});

Deno.test("config: ssh:// finds the ssh client in PATH and keeps user, port and socket", async () => {
  const bin = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${bin}/ssh`, "#!/bin/sh\n", { mode: 0o755 });
    const config = await resolveEngineConfig({
      env: { DOCKER_HOST: "ssh://me@example.org:2222/run/docker.sock", PATH: bin },
      home: "/h",
      readTextFile: files({}),
    });
    const endpoint = config.endpoint;
    assert(endpoint.kind === "ssh" && endpoint.sshBinary === `${bin}/ssh`);
    assert(endpoint.user === "me" && endpoint.port === 2222);
    assert(endpoint.socketPath === "/run/docker.sock");
    assert(config.description === "ssh://me@example.org:2222/run/docker.sock");
    const noClient = await configError(resolveEngineConfig({
      env: { DOCKER_HOST: "ssh://example.org", PATH: "/nonexistent" },
      home: "/h",
      readTextFile: files({}),
    }));
    assert(noClient.message.includes("'ssh' client"), noClient.message);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});
