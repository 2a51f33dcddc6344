/**
 * Byte helpers shared by the engine code.
 *
 * @module
 */

/** The parts one after the other in a new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** `bytes` random bytes in hex (names that must not collide, secrets). */
export function randomHex(bytes = 8): string {
  const values = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A stream of `head`, then of what `reader` still gives (bytes read ahead, put back). */
export function withHead(
  head: Uint8Array,
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  let first = head.length > 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller): Promise<void> {
      if (first) {
        first = false;
        controller.enqueue(head);
        return;
      }
      try {
        const next = await reader.read();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        controller.error(error);
      }
    },
    cancel(reason): Promise<void> {
      return reader.cancel(reason);
    },
  });
}
