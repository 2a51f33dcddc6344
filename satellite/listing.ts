/**
 * A directory listing as the satellite builds and sends it: the entries' names, and their
 * fixed-layout records beside them (src/protocol/records.ts). Shared by readdir (fs.ts) and the
 * walk (walk.ts).
 *
 * @module
 */

import { type EntryList, type EntryName, RecordWriter } from "../src/protocol/mod.ts";

/** A listing being built: names, and their records beside them. */
export interface Listing {
  readonly names: EntryName[];
  readonly records: RecordWriter;
}

/** An empty listing. */
export function newListing(): Listing {
  return { names: [], records: new RecordWriter() };
}

/** What a listing sends. */
export function wireListing(listing: Listing): EntryList {
  return { names: listing.names, records: listing.records.bytes() };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Decodes a name as UTF-8, or keeps the bytes when they are not valid UTF-8. */
export function decodeName(bytes: Uint8Array): string | Uint8Array {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  try {
    return utf8.decode(bytes);
  } catch {
    return bytes.slice();
  }
}
