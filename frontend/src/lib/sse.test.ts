import { describe, expect, it } from "vitest";

import { readSse, type SseEvent, SseParser } from "./sse";

function parseChunks(chunks: string[]): SseEvent[] {
  const events: SseEvent[] = [];
  const parser = new SseParser((e) => events.push(e));
  for (const c of chunks) parser.push(c);
  parser.end();
  return events;
}

const STREAM =
  'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n' +
  ": keep-alive\n\n" +
  'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n' +
  'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"cost":"0.0000005"}}\n\n' +
  "data: [DONE]\n\n";

describe("SseParser", () => {
  it("parses whole events", () => {
    const data = parseChunks([STREAM]).map((e) => e.data);
    expect(data).toHaveLength(4);
    expect(data[3]).toBe("[DONE]");
  });

  it("gives the same events for every split point, including mid-line and mid-CRLF", () => {
    const expected = parseChunks([STREAM]);
    for (const text of [STREAM, STREAM.replaceAll("\n", "\r\n"), STREAM.replaceAll("\n", "\r")]) {
      for (let i = 0; i <= text.length; i++) {
        expect(parseChunks([text.slice(0, i), text.slice(i)])).toEqual(expected);
      }
    }
  });

  it("handles one character at a time", () => {
    const text = STREAM.replaceAll("\n", "\r\n");
    expect(parseChunks([...text])).toEqual(parseChunks([STREAM]));
  });

  it("joins multi-line data, reads event names, drops an unterminated event", () => {
    const events = parseChunks(["event: error\ndata: a\ndata:b\n\n", "data: never finished"]);
    expect(events).toEqual([{ event: "error", data: "a\nb", id: undefined }]);
  });

  it("reads a byte stream split inside a multi-byte character", async () => {
    const bytes = new TextEncoder().encode('data: {"c":"héllo ✓"}\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const b of bytes) controller.enqueue(Uint8Array.of(b));
        controller.close();
      },
    });
    const events: SseEvent[] = [];
    await readSse(body, (e) => events.push(e));
    expect(events.map((e) => JSON.parse(e.data).c)).toEqual(["héllo ✓"]);
  });
});
