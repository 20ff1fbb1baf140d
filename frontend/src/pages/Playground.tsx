import { type FormEvent, useEffect, useRef, useState } from "react";

import { api, ApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { Adapter, BaseModel, DashboardConfig, PlaygroundToken } from "../api/types";
import { Async, CodeBlock, ErrorText, Field, PageHeader, useApi } from "../components/ui";
import { type ChatMessage, type ChatUsage, GatewayError, streamChat, type ToolCall } from "../lib/chat";
import { formatUsd } from "../lib/money";
import { pythonSnippet } from "../snippets";

interface Turn {
  user: string; reply: string; usage: ChatUsage | null; done: boolean; error?: string; toolCalls?: ToolCall[];
}

/** The tools box: empty, or a JSON array of OpenAI function tools. */
export function parseTools(text: string): unknown[] | undefined | "invalid" {
  if (!text.trim()) return undefined;
  try {
    const tools: unknown = JSON.parse(text);
    return Array.isArray(tools) && tools.length > 0 ? tools : "invalid";
  } catch {
    return "invalid";
  }
}

export function PlaygroundPage() {
  const models = useApi<BaseModel[]>(PATHS.models);
  const adapters = useApi<Adapter[]>(PATHS.adapters);
  const [model, setModel] = useState("");
  const [system, setSystem] = useState("You are a helpful assistant.");
  const [temperature, setTemperature] = useState("0.7");
  const [maxTokens, setMaxTokens] = useState("128");
  const [prompt, setPrompt] = useState("");
  const [jsonMode, setJsonMode] = useState(false);
  const [toolsText, setToolsText] = useState("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [showCode, setShowCode] = useState(false);
  const token = useRef<PlaygroundToken | null>(null);
  const abort = useRef<AbortController | null>(null);
  const config = useApi<DashboardConfig>(PATHS.config);

  useEffect(() => {
    const firstChat = models.data?.find((m) => m.kind === "chat");  // embedding models don't chat
    if (!model && firstChat) setModel(firstChat.public_name);
  }, [model, models.data]);
  useEffect(() => () => abort.current?.abort(), []);

  const key = async (): Promise<PlaygroundToken> => {
    // A fresh short-lived key when there is none or it expires within a minute; never stored beyond this page.
    const current = token.current;
    if (current && new Date(current.expires_at).getTime() - Date.now() > 60_000) return current;
    token.current = await api<PlaygroundToken>(PATHS.playgroundToken, { method: "POST" });
    return token.current;
  };

  const temp = Number(temperature);
  const max = Number.parseInt(maxTokens, 10);
  const invalid = !model ? "Pick a model." : !(temp >= 0 && temp <= 2) ? "Temperature is between 0 and 2." :
    !(max >= 1 && max <= 4096) ? "Max tokens is between 1 and 4096." : !prompt.trim() ? "Write a message." :
    parseTools(toolsText) === "invalid" ? "Tools must be a JSON array of function definitions." : undefined;

  const send = async (event: FormEvent) => {
    event.preventDefault();
    if (invalid || busy) return;
    setBusy(true);
    setError(undefined);
    const history: ChatMessage[] = [
      ...(system.trim() ? [{ role: "system" as const, content: system }] : []),
      ...turns.filter((t) => t.done && !t.error).flatMap((t) => [
        { role: "user" as const, content: t.user }, { role: "assistant" as const, content: t.reply },
      ]),
      { role: "user", content: prompt },
    ];
    const index = turns.length;
    setTurns((ts) => [...ts, { user: prompt, reply: "", usage: null, done: false }]);
    setPrompt("");
    const update = (f: (t: Turn) => Turn) => setTurns((ts) => ts.map((t, i) => (i === index ? f(t) : t)));
    try {
      const k = await key();
      abort.current = new AbortController();
      const { usage } = await streamChat({
        baseUrl: k.gateway_url, apiKey: k.secret, model, messages: history, temperature: temp, maxTokens: max,
        signal: abort.current.signal, onText: (text) => update((t) => ({ ...t, reply: t.reply + text })),
        jsonMode, tools: parseTools(toolsText) as unknown[] | undefined,
        onToolCalls: (calls) => update((t) => ({ ...t, toolCalls: calls })),
      });
      update((t) => ({ ...t, usage, done: true }));
    } catch (e) {
      const message = e instanceof GatewayError || e instanceof ApiError ? e.message
        : e instanceof DOMException && e.name === "AbortError" ? "Stopped." : `Can't reach the gateway at ${token.current?.gateway_url ?? "its address"} (${String(e)}).`;
      if (e instanceof GatewayError && e.status === 401) token.current = null; // expired or revoked: fetch a new one
      update((t) => ({ ...t, done: true, error: message }));
    } finally {
      setBusy(false);
      abort.current = null;
    }
  };

  return (
    <>
      <PageHeader title="Playground">
        Try a model or one of your adapters. Calls go to the gateway with a temporary key that expires in minutes.
      </PageHeader>
      <div className="playground">
        <form className="card settings" onSubmit={send} aria-label="Playground">
          <Async state={models} label="models" isEmpty={(l) => l.length === 0} empty="No models in the catalog.">
            {(list) => (
              <Field label="Model">
                {({ id }) => (
                  <select id={id} value={model} onChange={(e) => setModel(e.target.value)}>
                    <optgroup label="Base models">
                      {list.filter((m) => m.kind === "chat").map((m) => (
                        <option key={m.id} value={m.public_name}>{m.display_name}</option>
                      ))}
                    </optgroup>
                    {(adapters.data ?? []).some((a) => a.status === "ready") && (
                      <optgroup label="Your adapters">
                        {(adapters.data ?? []).filter((a) => a.status === "ready").map((a) => (
                          <option key={a.uid} value={a.model}>{a.name} (on {a.base_model})</option>
                        ))}
                      </optgroup>
                    )}
                  </select>
                )}
              </Field>
            )}
          </Async>
          <Field label="System prompt">
            {({ id }) => <textarea id={id} rows={3} value={system} onChange={(e) => setSystem(e.target.value)} />}
          </Field>
          <div className="row">
            <Field label="Temperature">
              {({ id }) => (
                <input id={id} type="number" min={0} max={2} step={0.1} value={temperature}
                  onChange={(e) => setTemperature(e.target.value)} />
              )}
            </Field>
            <Field label="Max tokens">
              {({ id }) => (
                <input id={id} type="number" min={1} max={4096} step={1} value={maxTokens}
                  onChange={(e) => setMaxTokens(e.target.value)} />
              )}
            </Field>
          </div>
          <label className="row">
            <input type="checkbox" checked={jsonMode} onChange={(e) => setJsonMode(e.target.checked)} />
            JSON mode (the reply is one JSON object)
          </label>
          <Field label="Tools (optional JSON array of functions)">
            {({ id }) => (
              <textarea id={id} rows={3} value={toolsText} spellCheck={false}
                placeholder='[{"type": "function", "function": {"name": "get_weather", "parameters": {...}}}]'
                onChange={(e) => setToolsText(e.target.value)} />
            )}
          </Field>
          <Field label="Message">
            {({ id }) => (
              <textarea id={id} rows={3} value={prompt} placeholder="Ask something…" onChange={(e) => setPrompt(e.target.value)}
                onKeyDown={(e) => {
                  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) void send(e);
                }} />
            )}
          </Field>
          <div className="row">
            <button type="submit" className="primary" disabled={busy || Boolean(invalid)} title={invalid}>
              {busy ? "Streaming…" : "Send"}
            </button>
            {busy && <button type="button" onClick={() => abort.current?.abort()}>Stop</button>}
            <button type="button" onClick={() => setShowCode((s) => !s)} aria-expanded={showCode}>
              {showCode ? "Hide code" : "View code"}
            </button>
            {turns.length > 0 && !busy && <button type="button" onClick={() => setTurns([])}>Clear</button>}
          </div>
          <ErrorText error={error} />
        </form>
        <section className="card transcript" aria-label="Conversation" aria-live="polite">
          {turns.length === 0 && <p className="muted">Send a message to see the model stream its reply.</p>}
          {turns.map((t, i) => (
            <article key={i} className="turn" data-testid="turn">
              <p className="user-msg"><strong>You</strong> {t.user}</p>
              <p className="reply" data-testid="reply">{t.reply || (t.done || t.toolCalls?.length ? "" : "…")}</p>
              {t.toolCalls?.map((c) => (
                <pre key={c.id || c.name} className="tool-call" data-testid="tool-call">
                  {c.name}({c.arguments})
                </pre>
              ))}
              {t.error && <p className="error" role="alert">{t.error}</p>}
              {t.usage && (
                <p className="muted small" data-testid="turn-usage">
                  {t.usage.prompt_tokens} prompt + {t.usage.completion_tokens} completion tokens
                  {t.usage.cost !== undefined && <> · <span data-testid="turn-cost" data-cost={t.usage.cost}>{formatUsd(t.usage.cost)}</span></>}
                </p>
              )}
            </article>
          ))}
        </section>
      </div>
      {showCode && (
        <CodeBlock
          label="The same call with the openai SDK (Python)"
          code={pythonSnippet({
            baseUrl: config.data?.gateway_url ?? "<your gateway URL>", model, system: system.trim() || undefined,
            user: turns.at(-1)?.user ?? (prompt || undefined), temperature: temp, maxTokens: max, stream: true,
          })}
        />
      )}
    </>
  );
}
