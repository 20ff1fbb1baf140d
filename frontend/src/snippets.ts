// The same call as the dashboard makes, written for the openai SDK.

export function pythonSnippet(opts: {
  baseUrl: string; model: string; system?: string; user?: string; temperature?: number; maxTokens?: number;
  stream?: boolean;
}): string {
  const messages = [
    ...(opts.system ? [`        {"role": "system", "content": ${JSON.stringify(opts.system)}},`] : []),
    `        {"role": "user", "content": ${JSON.stringify(opts.user || "Say hello in one sentence.")}},`,
  ];
  const extra = [
    ...(opts.temperature !== undefined ? [`    temperature=${opts.temperature},`] : []),
    ...(opts.maxTokens !== undefined ? [`    max_tokens=${opts.maxTokens},`] : []),
  ];
  const call = [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(opts.baseUrl)}, api_key=os.environ["HEARTH_API_KEY"])`,
    "",
    `${opts.stream ? "stream" : "reply"} = client.chat.completions.create(`,
    `    model=${JSON.stringify(opts.model)},`,
    "    messages=[",
    ...messages,
    "    ],",
    ...extra,
    ...(opts.stream ? ["    stream=True,", '    stream_options={"include_usage": True},'] : []),
    ")",
  ];
  if (opts.stream) {
    call.push(
      "for chunk in stream:",
      "    if chunk.choices:",
      '        print(chunk.choices[0].delta.content or "", end="", flush=True)',
      "    if chunk.usage:",
      "        print(f\"\\n{chunk.usage.prompt_tokens} + {chunk.usage.completion_tokens} tokens\")",
    );
  } else {
    call.push("print(reply.choices[0].message.content)");
  }
  return call.join("\n");
}

export function curlSnippet(baseUrl: string, model: string): string {
  return [
    `curl ${baseUrl}/chat/completions \\`,
    '  -H "Authorization: Bearer $HEARTH_API_KEY" \\',
    '  -H "Content-Type: application/json" \\',
    `  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Say hello"}]}'`,
  ].join("\n");
}
