// One streamed chat completion against the gateway (OpenAI wire format), called with the playground's short-lived key.
import { readSse } from "./sse";

export interface ChatMessage { role: "system" | "user" | "assistant"; content: string }
export interface ToolCall { id: string; name: string; arguments: string }

interface ToolCallDelta { index: number; id?: string; function?: { name?: string; arguments?: string } }

/** Folds streamed tool-call deltas (OpenAI: index, id and name first, then `arguments` in fragments) into calls. */
export function mergeToolCallDeltas(calls: ToolCall[], deltas: ToolCallDelta[]): ToolCall[] {
  const out = calls.map((c) => ({ ...c }));
  for (const d of deltas) {
    const call = out[d.index] ?? (out[d.index] = { id: "", name: "", arguments: "" });
    if (d.id) call.id = d.id;
    if (d.function?.name) call.name += d.function.name;
    if (d.function?.arguments) call.arguments += d.function.arguments;
  }
  return out;
}
export interface ChatUsage { prompt_tokens: number; completion_tokens: number; total_tokens: number; cost?: string }

export class GatewayError extends Error {
  constructor(message: string, readonly status: number, readonly code: string | null = null) {
    super(message);
  }
}

export async function streamChat(opts: {
  baseUrl: string; apiKey: string; model: string; messages: ChatMessage[]; temperature: number; maxTokens: number;
  signal?: AbortSignal; onText: (text: string) => void;
  /** JSON mode: the reply is one JSON object (response_format json_object). */
  jsonMode?: boolean;
  /** OpenAI `tools` (function definitions); calls arrive through onToolCalls. */
  tools?: unknown[];
  onToolCalls?: (calls: ToolCall[]) => void;
}): Promise<{ usage: ChatUsage | null; finishReason: string | null; toolCalls: ToolCall[] }> {
  const response = await fetch(`${opts.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${opts.apiKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({
      model: opts.model, messages: opts.messages, temperature: opts.temperature, max_tokens: opts.maxTokens,
      stream: true, stream_options: { include_usage: true },
      ...(opts.jsonMode ? { response_format: { type: "json_object" } } : {}),
      ...(opts.tools?.length ? { tools: opts.tools } : {}),
    }),
    signal: opts.signal,
  });
  if (!response.ok || !response.body) {
    let message = `The gateway answered ${response.status}.`;
    let code: string | null = null;
    try {
      const body = (await response.json()) as { error?: { message?: string; code?: string } };
      message = body.error?.message ?? message;
      code = body.error?.code ?? null;
    } catch {
      // not JSON; keep the status line
    }
    throw new GatewayError(message, response.status, code);
  }
  let usage: ChatUsage | null = null;
  let finishReason: string | null = null;
  let streamError: GatewayError | null = null;
  let toolCalls: ToolCall[] = [];
  await readSse(response.body, (event) => {
    if (event.data === "[DONE]") return;
    const chunk = JSON.parse(event.data) as {
      choices?: { delta?: { content?: string | null; tool_calls?: ToolCallDelta[] }; finish_reason?: string | null }[];
      usage?: ChatUsage | null;
      error?: { message?: string; code?: string };
    };
    if (chunk.error) streamError = new GatewayError(chunk.error.message ?? "stream error", 200, chunk.error.code ?? null);
    for (const choice of chunk.choices ?? []) {
      if (choice.delta?.content) opts.onText(choice.delta.content);
      if (choice.delta?.tool_calls?.length) {
        toolCalls = mergeToolCallDeltas(toolCalls, choice.delta.tool_calls);
        opts.onToolCalls?.(toolCalls);
      }
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  });
  if (streamError) throw streamError;
  return { usage, finishReason, toolCalls };
}
