/**
 * Docker's volume plugin protocol (legacy plugin discovery): JSON over HTTP POST, one endpoint
 * per driver method, failures as HTTP 200 with a non-empty `Err` (what dockerd reports to the
 * user).
 *
 * @module
 */

import type { Logger } from "../fuse/mod.ts";
import { type VolumeDriver, VolumeError } from "./driver.ts";

/** Content type of plugin replies. */
export const PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json";

type Body = Record<string, unknown>;

function reply(body: Body, status = 200): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    // One call per connection: an idle keep-alive connection from dockerd would hold up a
    // graceful shutdown.
    headers: { "content-type": PLUGIN_CONTENT_TYPE, "connection": "close" },
  });
}

/** Reads the request body as a JSON object; an empty body is `{}`. Never throws. */
async function readBody(request: Request): Promise<Body | string> {
  let text: string;
  try {
    text = await request.text();
  } catch (error) {
    return `cannot read the request body: ${(error as Error).message}`;
  }
  if (text.trim() === "") return {};
  try {
    const value = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Body;
    return "the request body is not a JSON object";
  } catch {
    return "the request body is not JSON";
  }
}

function stringField(body: Body, key: string): string | undefined {
  const value = body[key];
  return typeof value === "string" ? value : undefined;
}

/** `Opts` as strings only (Docker sends `-o k=v` pairs as a string map, or null). */
function optsField(body: Body): Record<string, string> | string {
  const value = body.Opts;
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) return "Opts is not an object";
  const opts: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") return `option '${key}' is not a string`;
    opts[key] = v;
  }
  return opts;
}

/** Answers one plugin request with `driver`. */
export async function handlePluginRequest(
  driver: VolumeDriver,
  request: Request,
  logger: Logger,
): Promise<Response> {
  const endpoint = new URL(request.url).pathname;
  if (request.method !== "POST") return reply({ Err: `${request.method} is not supported` }, 405);
  const body = await readBody(request);
  if (typeof body === "string") return reply({ Err: body }, 400);
  logger.debug(`plugin ${endpoint} ${JSON.stringify(body)}`);
  const name = stringField(body, "Name") ?? "";
  const id = stringField(body, "ID") ?? "";
  try {
    switch (endpoint) {
      case "/Plugin.Activate":
        return reply({ Implements: ["VolumeDriver"] });
      case "/VolumeDriver.Capabilities":
        return reply({ Capabilities: { Scope: "local" } });
      case "/VolumeDriver.Create": {
        const opts = optsField(body);
        if (typeof opts === "string") return reply({ Err: opts });
        await driver.create(name, opts);
        return reply({ Err: "" });
      }
      case "/VolumeDriver.Remove":
        await driver.remove(name);
        return reply({ Err: "" });
      case "/VolumeDriver.Mount":
        return reply({ Mountpoint: await driver.mount(name, id), Err: "" });
      case "/VolumeDriver.Unmount":
        await driver.unmount(name, id);
        return reply({ Err: "" });
      case "/VolumeDriver.Path":
        return reply({ Mountpoint: driver.path(name), Err: "" });
      case "/VolumeDriver.Get":
        return reply({ Volume: driver.get(name), Err: "" });
      case "/VolumeDriver.List":
        return reply({ Volumes: driver.list(), Err: "" });
      default:
        return reply({ Err: `unknown endpoint '${endpoint}'` }, 404);
    }
  } catch (error) {
    const message = (error as Error).message;
    if (!(error instanceof VolumeError)) logger.error(`plugin ${endpoint}: ${message}`);
    else if (endpoint === "/VolumeDriver.Get") logger.debug(`plugin ${endpoint}: ${message}`);
    else logger.warn(`plugin ${endpoint} '${name}': ${message}`);
    return reply({ Err: message });
  }
}
