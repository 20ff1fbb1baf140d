import { afterEach, describe, expect, it, vi } from "vitest";

import { mergeToolCallDeltas, streamChat } from "./chat";
import { parseTools } from "../pages/Playground";

const sse = (chunks: object[]) =>
  chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join("") + "data: [DONE]\n\n";

describe("tool calls", () => {
  it("folds OpenAI's streamed deltas into whole calls", () => {
    let calls = mergeToolCallDeltas([], [{ index: 0, id: "call_a", function: { name: "get_weather", arguments: "" } }]);
    calls = mergeToolCallDeltas(calls, [{ index: 0, function: { arguments: '{"city": ' } }]);
    calls = mergeToolCallDeltas(calls, [{ index: 1, id: "call_b", function: { name: "get_time", arguments: "" } },
      { index: 0, function: { arguments: '"Paris"}' } }]);
    calls = mergeToolCallDeltas(calls, [{ index: 1, function: { arguments: "{}" } }]);
    expect(calls).toEqual([
      { id: "call_a", name: "get_weather", arguments: '{"city": "Paris"}' },
      { id: "call_b", name: "get_time", arguments: "{}" },
    ]);
  });

  it("parses the playground's tools box", () => {
    expect(parseTools("  ")).toBeUndefined();
    expect(parseTools('[{"type": "function", "function": {"name": "f"}}]')).toHaveLength(1);
    expect(parseTools("[]")).toBe("invalid");
    expect(parseTools("{not json")).toBe("invalid");
  });
});

describe("streamChat", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("sends JSON mode and tools, and reports streamed tool calls", async () => {
    const body = sse([
      { choices: [{ index: 0, delta: { role: "assistant", content: "" } }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: "call_1", type: "function",
        function: { name: "get_weather", arguments: "" } }] } }] },
      { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":"Oslo"}' } }] } }] },
      { choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] },
    ]);
    const fetchMock = vi.fn(async () => new Response(body, { status: 200 }));
    vi.stubGlobal("fetch", fetchMock);
    const seen: number[] = [];
    const tools = [{ type: "function", function: { name: "get_weather" } }];
    const result = await streamChat({
      baseUrl: "http://gw/v1", apiKey: "k", model: "m", messages: [{ role: "user", content: "hi" }],
      temperature: 0, maxTokens: 8, onText: () => {}, jsonMode: true, tools,
      onToolCalls: (calls) => seen.push(calls.length),
    });
    const sent = JSON.parse((fetchMock.mock.calls[0] as unknown as [string, RequestInit])[1].body as string);
    expect(sent.response_format).toEqual({ type: "json_object" });
    expect(sent.tools).toEqual(tools);
    expect(result.finishReason).toBe("tool_calls");
    expect(result.toolCalls).toEqual([{ id: "call_1", name: "get_weather", arguments: '{"city":"Oslo"}' }]);
    expect(seen).toEqual([1, 1]);
  });

  it("sends neither field when off", async () => {
    const fetchMock = vi.fn(async () => new Response(sse([]), { status: 200 }));
    vi.stubGlobal("fetch", fetchMock);
    await streamChat({ baseUrl: "http://gw/v1", apiKey: "k", model: "m", messages: [], temperature: 0,
      maxTokens: 8, onText: () => {} });
    const sent = JSON.parse((fetchMock.mock.calls[0] as unknown as [string, RequestInit])[1].body as string);
    expect(sent).not.toHaveProperty("response_format");
    expect(sent).not.toHaveProperty("tools");
  });
});
