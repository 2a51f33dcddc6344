/**
 * The volume plugin's options and their defaults: what the command line needs of the plugin,
 * without loading it.
 *
 * @module
 */

/** Where dockerd looks for legacy plugin sockets; the file name is the driver name. */
export const DEFAULT_PLUGIN_SOCKET = "/run/docker/plugins/dockerfuse.sock";
/** Volume definitions and mountpoints. */
export const DEFAULT_STATE_DIR = "/var/lib/dockerfuse";

/** What `dockerfuse volume-plugin` was asked to do. */
export interface VolumePluginOptions {
  socket: string;
  stateDir: string;
  debug: boolean;
  logFormat: "text" | "json";
}
