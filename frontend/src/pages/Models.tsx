import { Link } from "react-router-dom";

import { PATHS } from "../api/paths";
import type { Adapter, BaseModel } from "../api/types";
import { Async, PageHeader, useApi } from "../components/ui";
import { formatPerMillion } from "../lib/money";

export function ModelsPage() {
  const models = useApi<BaseModel[]>(PATHS.models);
  const adapters = useApi<Adapter[]>(PATHS.adapters);
  return (
    <>
      <PageHeader title="Models">
        Base models you can call, with prices in USD per million tokens. Your adapters cost what their base model costs.
        Chat models answer <code>/v1/chat/completions</code>; embedding models answer <code>/v1/embeddings</code> and
        are billed for input tokens only.
      </PageHeader>
      <section>
        <h2>Catalog</h2>
        <Async state={models} label="models" isEmpty={(l) => l.length === 0} empty="The catalog is empty.">
          {(list) => (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr><th>Model</th><th>Kind</th><th>Context</th><th>Input</th><th>Cached input</th><th>Output</th></tr>
                </thead>
                <tbody>
                  {list.map((m) => (
                    <tr key={m.id}>
                      <td><strong>{m.display_name}</strong><br /><code className="small">{m.public_name}</code></td>
                      <td><span className={`badge ${m.kind}`}>{m.kind === "embedding" ? "embeddings" : "chat"}</span></td>
                      <td>{m.context_length.toLocaleString("en-US")} tokens</td>
                      <td>{formatPerMillion(m.price_input_per_mtok)}</td>
                      <td>{formatPerMillion(m.price_cached_input_per_mtok)}</td>
                      <td>{m.kind === "embedding" ? "—" : formatPerMillion(m.price_output_per_mtok)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Async>
      </section>
      <section>
        <h2>Your adapters</h2>
        <Async state={adapters} label="adapters" isEmpty={(l) => l.length === 0}
          empty={<>No adapters yet. <Link to="/adapters">Upload a LoRA adapter</Link>.</>}>
          {(list) => (
            <div className="table-wrap">
              <table>
                <thead><tr><th>Model name</th><th>Base</th><th>Status</th></tr></thead>
                <tbody>
                  {list.map((a) => (
                    <tr key={a.uid}>
                      <td><code className="small">{a.model}</code></td>
                      <td>{a.base_model}</td>
                      <td><span className={`badge ${a.status}`}>{a.status}</span></td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Async>
      </section>
    </>
  );
}
