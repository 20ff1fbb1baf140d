import { Link } from "react-router-dom";

import { PATHS } from "../api/paths";
import type { ApiKey, BaseModel, DashboardConfig, Usage } from "../api/types";
import { Async, CodeBlock, PageHeader, useApi } from "../components/ui";
import { addDays, isoDay, monthStart } from "../lib/dates";
import { formatTokens, formatUsd } from "../lib/money";
import { pythonSnippet } from "../snippets";

export function OverviewPage() {
  const keys = useApi<ApiKey[]>(PATHS.keys);
  const start = monthStart();
  const usage = useApi<Usage>(`${PATHS.usage}?start=${start}&end=${addDays(isoDay(new Date()), 1)}&group_by=model`);
  const config = useApi<DashboardConfig>(PATHS.config);
  const models = useApi<BaseModel[]>(PATHS.models);
  return (
    <>
      <PageHeader title="Overview">Your account at a glance this month (UTC).</PageHeader>
      <section className="stats" aria-label="This month">
        <div className="stat card">
          <h2>Active API keys</h2>
          <Async state={keys} label="keys">
            {(list) => <p className="big" data-testid="key-count">{list.filter((k) => k.is_active).length}</p>}
          </Async>
          <Link to="/keys">Manage keys</Link>
        </div>
        <div className="stat card">
          <h2>Tokens this month</h2>
          <Async state={usage} label="usage">
            {(u) => (
              <p className="big" data-testid="month-tokens">
                {formatTokens(u.total.prompt_tokens + u.total.completion_tokens)}
              </p>
            )}
          </Async>
          <Link to="/usage">See usage</Link>
        </div>
        <div className="stat card">
          <h2>Cost this month</h2>
          <Async state={usage} label="usage">
            {(u) => <p className="big" data-testid="month-cost">{formatUsd(u.total.cost_usd)}</p>}
          </Async>
          <Link to="/billing">Billing</Link>
        </div>
      </section>
      <section className="card">
        <h2>Quick start</h2>
        <Async state={config} label="the gateway address">
          {(c) => (
            <>
              <p>
                Hearth speaks the OpenAI API at <code data-testid="base-url">{c.gateway_url}</code>. Create a key on the{" "}
                <Link to="/keys">API keys</Link> page, export it as <code>HEARTH_API_KEY</code>, then:
              </p>
              <CodeBlock
                label="Python (pip install openai)"
                code={pythonSnippet({
                  baseUrl: c.gateway_url,
                  // the snippet is a chat completion: name a chat model, not the embedding model sorted first
                  model: models.data?.find((m) => m.kind === "chat")?.public_name ?? "accounts/hearth/models/<model>",
                })}
              />
            </>
          )}
        </Async>
      </section>
    </>
  );
}
