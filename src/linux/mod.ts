/**
 * Linux constants shared by every layer (a leaf: imports nothing).
 *
 * @module
 */

export * from "./constants.ts";
export * from "./inotify.ts";
