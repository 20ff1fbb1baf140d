import { type FormEvent, useState } from "react";

import { api, ApiError, asApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { Adapter, BaseModel, Route, RouteStats } from "../api/types";
import { Async, ConfirmButton, ErrorText, Field, PageHeader, useApi } from "../components/ui";
import { addDays, isoDay } from "../lib/dates";
import { formatTokens, formatUsd } from "../lib/money";

interface Row { model: string; weight: string }


/** The variants form: rows of model + weight, used to create a route and to change one live. */
function VariantsForm(props: {
  models: string[]; initial: Row[]; submitLabel: string; name?: boolean;
  onSubmit: (name: string, variants: { model: string; weight: number }[]) => Promise<void>;
}) {
  const [name, setName] = useState("");
  const [rows, setRows] = useState<Row[]>(props.initial);
  const [error, setError] = useState<ApiError>();
  const set = (i: number, patch: Partial<Row>) => setRows(rows.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    try {
      await props.onSubmit(name, rows.map((r) => ({ model: r.model, weight: Number.parseInt(r.weight, 10) })));
      if (props.name) setName("");
    } catch (e) {
      setError(asApiError(e));
    }
  };
  const errorFor = (i: number) => [...(error?.fieldErrors[`variants[${i}].model`] ?? []),
    ...(error?.fieldErrors[`variants[${i}].weight`] ?? [])];
  return (
    <form className="variants-form" onSubmit={submit} aria-label={props.submitLabel}>
      {props.name && (
        <Field label="Route name" errors={error?.fieldErrors.name} hint="Called as accounts/<you>/models/<name>.">
          {({ id, describedBy, invalid }) => (
            <input id={id} value={name} aria-invalid={invalid} aria-describedby={describedBy}
              onChange={(e) => setName(e.target.value)} />
          )}
        </Field>
      )}
      {rows.map((row, i) => (
        <div className="inline-form" key={i} role="group" aria-label={`Variant ${i + 1}`}>
          <Field label={`Variant ${i + 1} model`} errors={errorFor(i)}>
            {({ id, describedBy, invalid }) => (
              <select id={id} value={row.model} aria-invalid={invalid} aria-describedby={describedBy}
                onChange={(e) => set(i, { model: e.target.value })}>
                {props.models.map((m) => <option key={m} value={m}>{m}</option>)}
              </select>
            )}
          </Field>
          <Field label={`Variant ${i + 1} weight`}>
            {({ id }) => (
              <input id={id} inputMode="numeric" size={5} value={row.weight} onChange={(e) => set(i, { weight: e.target.value })} />
            )}
          </Field>
          {rows.length > 1 && (
            <button type="button" onClick={() => setRows(rows.filter((_, j) => j !== i))}>Remove variant</button>
          )}
        </div>
      ))}
      <button type="button" onClick={() => setRows([...rows, { model: props.models[0] ?? "", weight: "1" }])}>Add variant</button>{" "}
      <button type="submit" className="primary">{props.submitLabel}</button>
      {error && !Object.keys(error.fieldErrors).length && <ErrorText error={error} />}
      {error?.fieldErrors.variants && <ErrorText error={error.fieldErrors.variants.join(" ")} />}
    </form>
  );
}

function ms(x: number | null): string {
  return x === null ? "—" : `${Math.round(x).toLocaleString("en-US")} ms`;
}

function RouteCard({ route, models, onChange }: { route: Route; models: string[]; onChange: () => void }) {
  const today = isoDay(new Date());
  const [start, setStart] = useState(addDays(today, -6));
  const [last, setLast] = useState(today);
  const stats = useApi<RouteStats>(start <= last ? `${PATHS.routeStats(route.id)}?start=${start}&end=${addDays(last, 1)}` : null);
  const [editing, setEditing] = useState(false);
  return (
    <section className="card" data-testid={`route-${route.name}`}>
      <h2>{route.name}</h2>
      <p className="muted small"><code>{route.model}</code></p>
      <ul className="plain-list" aria-label={`Variants of ${route.name}`}>
        {route.variants.map((v) => (
          <li key={v.id}>
            <span>{v.model}</span> <span className="badge">{(v.share * 100).toFixed(1)}%</span>
            {!v.ready && <span className="badge pending">not ready</span>}
          </li>
        ))}
      </ul>
      {editing ? (
        <VariantsForm models={models} submitLabel="Save weights"
          initial={route.variants.map((v) => ({ model: v.model, weight: String(v.weight) }))}
          onSubmit={async (_n, variants) => {
            await api(PATHS.route(route.id), { method: "PATCH", json: { variants } });
            setEditing(false);
            onChange();
          }} />
      ) : (
        <button type="button" onClick={() => setEditing(true)}>Change weights</button>
      )}{" "}
      <ConfirmButton label="Delete" confirm={`Delete the route ${route.name}?`} onConfirm={async () => {
        await api(PATHS.route(route.id), { method: "DELETE" });
        onChange();
      }} />
      <div className="inline-form">
        <Field label="From">{({ id }) => <input id={id} type="date" value={start} max={last} onChange={(e) => setStart(e.target.value)} />}</Field>
        <Field label="To">{({ id }) => <input id={id} type="date" value={last} min={start} onChange={(e) => setLast(e.target.value)} />}</Field>
        <button type="button" onClick={stats.reload}>Refresh figures</button>
      </div>
      <Async state={stats} label="figures">
        {(s) => (
          <div className="table-wrap">
            <table aria-label={`Figures of ${route.name}`}>
              <thead><tr><th>Variant</th><th>Requests</th><th>Input</th><th>Output</th><th>Cost</th><th>TTFT p50</th><th>TTFT p99</th><th>Latency p50</th><th>Latency p99</th><th>Errors</th></tr></thead>
              <tbody>
                {s.data.map((v) => (
                  <tr key={String(v.variant_id)} data-testid="variant-row">
                    <td>{v.model}</td><td>{formatTokens(v.num_requests)}</td><td>{formatTokens(v.prompt_tokens)}</td>
                    <td>{formatTokens(v.completion_tokens)}</td><td>{formatUsd(v.cost_usd)}</td>
                    <td>{ms(v.ttft_ms_p50)}</td><td>{ms(v.ttft_ms_p99)}</td><td>{ms(v.latency_ms_p50)}</td>
                    <td>{ms(v.latency_ms_p99)}</td><td>{(v.error_rate * 100).toFixed(1)}%</td>
                  </tr>
                ))}
              </tbody>
              <tfoot><tr><th>Total</th><th data-testid="route-total-requests">{formatTokens(s.total.num_requests)}</th><th>{formatTokens(s.total.prompt_tokens)}</th><th>{formatTokens(s.total.completion_tokens)}</th><th>{formatUsd(s.total.cost_usd)}</th><th colSpan={5} /></tr></tfoot>
            </table>
          </div>
        )}
      </Async>
    </section>
  );
}

export function RoutesPage() {
  const routes = useApi<Route[]>(PATHS.routes);
  const catalog = useApi<BaseModel[]>(PATHS.models);
  const adapters = useApi<Adapter[]>(PATHS.adapters);
  const models = [...(catalog.data ?? []).filter((m) => m.kind === "chat").map((m) => m.public_name),
    ...(adapters.data ?? []).filter((a) => a.status !== "failed").map((a) => a.model)];
  return (
    <>
      <PageHeader title="Routes">
        A/B splits: one model name of yours that sends each request to one of its variants by weight. Requests with a
        `user` always get the same variant. Weights change live.
      </PageHeader>
      {models.length > 0 && (
        <section className="card">
          <h2>New route</h2>
          <VariantsForm models={models} name submitLabel="Create route"
            initial={[{ model: models[0] ?? "", weight: "90" }, { model: models[models.length - 1] ?? "", weight: "10" }]}
            onSubmit={async (name, variants) => {
              await api(PATHS.routes, { method: "POST", json: { name, variants } });
              routes.reload();
            }} />
        </section>
      )}
      <Async state={routes} label="routes" isEmpty={(r) => r.length === 0} empty="No routes yet.">
        {(list) => <>{list.map((r) => <RouteCard key={`${r.id}-${r.updated_at}`} route={r} models={models} onChange={routes.reload} />)}</>}
      </Async>
    </>
  );
}
