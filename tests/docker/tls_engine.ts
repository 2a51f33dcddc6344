/**
 * A second dockerd for the remote-engine tests: it listens on 127.0.0.1:<port> with --tlsverify
 * (certificates made here with openssl) besides a private unix socket, with its own data root,
 * exec root (hence its own containerd) and pidfile, and no networking setup.
 */

import type { TestBed } from "../../tasks/testbed/mod.ts";
import { dockerCli, freePort } from "./helpers.ts";

export interface TlsEngine {
  /** tcp port on 127.0.0.1 */
  readonly port: number;
  /** DOCKER_CERT_PATH with the right CA and a client certificate */
  readonly certDir: string;
  /** DOCKER_CERT_PATH whose CA did not sign the server certificate */
  readonly wrongCaDir: string;
  /** the private unix socket, for setting things up with the docker CLI */
  readonly unixHost: string;
  /** id of a running musl container on this engine */
  readonly containerId: string;
  stop(): Promise<void>;
}

async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const output = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  return new TextDecoder().decode(output.stdout);
}

/** A CA, and a certificate signed by it with the given extensions. */
async function makeCa(dir: string, name: string): Promise<void> {
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${dir}/${name}-key.pem`,
    "-out",
    `${dir}/${name}.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=dockerfuse test ${name}`,
  ]);
}

async function makeCert(
  dir: string,
  ca: string,
  out: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await run("openssl", [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${dir}/${out}-key.pem`,
    "-out",
    `${dir}/${out}.csr`,
    "-subj",
    subject,
  ]);
  await Deno.writeTextFile(`${dir}/${out}.ext`, extensions);
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    `${dir}/${out}.csr`,
    "-CA",
    `${dir}/${ca}.pem`,
    "-CAkey",
    `${dir}/${ca}-key.pem`,
    "-CAcreateserial",
    "-out",
    `${dir}/${out}.pem`,
    "-days",
    "2",
    "-extfile",
    `${dir}/${out}.ext`,
  ]);
}

export async function startTlsDockerd(bed: TestBed): Promise<TlsEngine> {
  const dir = await Deno.makeTempDir({ prefix: "dfh-tlsd-" });
  const pki = `${dir}/pki`;
  await Deno.mkdir(pki);
  await makeCa(pki, "ca");
  await makeCa(pki, "other-ca");
  await makeCert(
    pki,
    "ca",
    "server",
    "/CN=127.0.0.1",
    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  await makeCert(pki, "ca", "client", "/CN=client", "extendedKeyUsage=clientAuth\n");
  await makeCert(pki, "other-ca", "other-client", "/CN=client", "extendedKeyUsage=clientAuth\n");
  const certDir = `${dir}/certs`;
  const wrongCaDir = `${dir}/wrong-ca`;
  for (
    const [target, ca, client] of [[certDir, "ca", "client"], [
      wrongCaDir,
      "other-ca",
      "other-client",
    ]]
  ) {
    await Deno.mkdir(target);
    await Deno.copyFile(`${pki}/${ca}.pem`, `${target}/ca.pem`);
    await Deno.copyFile(`${pki}/${client}.pem`, `${target}/cert.pem`);
    await Deno.copyFile(`${pki}/${client}-key.pem`, `${target}/key.pem`);
  }

  const port = freePort();
  const unixHost = `unix://${dir}/docker.sock`;
  const args = [
    `--data-root=${dir}/data`,
    `--exec-root=${dir}/exec`,
    `--pidfile=${dir}/docker.pid`,
    `-H`,
    unixHost,
    `-H`,
    `tcp://127.0.0.1:${port}`,
    "--tlsverify",
    `--tlscacert=${pki}/ca.pem`,
    `--tlscert=${pki}/server.pem`,
    `--tlskey=${pki}/server-key.pem`,
    "--bridge=none",
    "--iptables=false",
    "--ip-masq=false",
  ];
  const daemon = new Deno.Command("sh", {
    args: ["-c", `exec dockerd ${args.join(" ")} >${dir}/dockerd.log 2>&1 </dev/null`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const local = { ...bed, dockerHost: unixHost };

  const stop = async (): Promise<void> => {
    await dockerCli(local, ["rm", "-f", ...await listContainers(local)]).catch(() => {});
    try {
      daemon.kill("SIGTERM");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        daemon.kill("SIGKILL");
      } catch {
        // already gone
      }
    }, 15_000);
    await daemon.status;
    clearTimeout(timer);
    // dockerd unmounts its layers on shutdown; anything left would make the removal fail loudly
    await Deno.remove(dir, { recursive: true });
  };

  try {
    let answered = false;
    for (let attempt = 0; attempt < 150 && !answered; attempt++) {
      answered = (await dockerCli(local, ["version", "--format", "{{.Server.Version}}"])).code ===
        0;
      if (!answered) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!answered) {
      const log = await Deno.readTextFile(`${dir}/dockerd.log`).catch(() => "");
      throw new Error(`Cannot start the TLS dockerd: no answer on ${unixHost}\n${log}`);
    }
    const image = bed.images.musl;
    await run("docker", ["-H", bed.dockerHost, "save", "-o", `${dir}/image.tar`, image]);
    const loaded = await dockerCli(local, ["load", "-i", `${dir}/image.tar`]);
    if (loaded.code !== 0) throw new Error(`Cannot load ${image}: ${loaded.stderr}`);
    const started = await dockerCli(local, ["run", "-d", "--network", "none", image]);
    if (started.code !== 0) throw new Error(`Cannot start a container: ${started.stderr}`);
    const containerId = started.stdout.trim();
    return { port, certDir, wrongCaDir, unixHost, containerId, stop };
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
}

async function listContainers(bed: TestBed): Promise<string[]> {
  const listed = await dockerCli(bed, ["ps", "-aq"]);
  return listed.stdout.split("\n").filter((line) => line !== "");
}
