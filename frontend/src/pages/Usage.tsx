import { useState } from "react";

import { PATHS } from "../api/paths";
import type { ApiKey, Usage, UsageRow } from "../api/types";
import { Async, ErrorText, Field, PageHeader, useApi } from "../components/ui";
import { addDays, daysBetween, isoDay } from "../lib/dates";
import { addDecimal, compareDecimal, formatTokens, formatUsd, ratioPerMille } from "../lib/money";

function CostChart({ rows, start, end }: { rows: UsageRow[]; start: string; end: string }) {
  const byDay = new Map(rows.map((r) => [r.day ?? "", r]));
  const days = daysBetween(start, end);
  const max = rows.reduce((m, r) => (compareDecimal(r.cost_usd, m) > 0 ? r.cost_usd : m), "0");
  const w = 720;
  const h = 180;
  const barW = w / Math.max(days.length, 1);
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${w} ${h + 20}`} role="img" aria-label={`Cost per day, highest ${formatUsd(max)}`}>
        <line x1={0} x2={w} y1={h} y2={h} className="axis" />
        {days.map((day, i) => {
          const row = byDay.get(day);
          const cost = row?.cost_usd ?? "0";
          // Any non-zero day gets at least 2 px so a cheap request is visible next to a big one.
          const px = row ? Math.max((ratioPerMille(cost, max) * h) / 1000, compareDecimal(cost, "0") > 0 ? 2 : 0) : 0;
          return (
            <rect key={day} x={i * barW + 1} y={h - px} width={Math.max(barW - 2, 1)} height={px} className="bar">
              <title>
                {day}: {formatUsd(cost)}, {formatTokens((row?.prompt_tokens ?? 0) + (row?.completion_tokens ?? 0))} tokens
              </title>
            </rect>
          );
        })}
        <text x={0} y={h + 16} className="tick">{start}</text>
        <text x={w} y={h + 16} className="tick" textAnchor="end">{addDays(end, -1)}</text>
      </svg>
      <figcaption className="muted small">Cost per day (UTC). Highest day: {formatUsd(max)}.</figcaption>
    </figure>
  );
}

const PALETTE = ["#c2410c", "#2563eb", "#16a34a", "#9333ea", "#ca8a04", "#0891b2", "#db2777", "#4b5563"];

/** Cost per day, stacked by model (group_by=model_day). */
function ModelDailyChart({ rows, start, end }: { rows: UsageRow[]; start: string; end: string }) {
  const days = daysBetween(start, end);
  const models = [...new Set(rows.map((r) => r.model ?? "?"))].sort();
  const color = (m: string) => PALETTE[models.indexOf(m) % PALETTE.length];
  const perDay = new Map<string, UsageRow[]>();
  for (const r of rows) perDay.set(r.day ?? "", [...(perDay.get(r.day ?? "") ?? []), r]);
  const totals = days.map((d) => addDecimal("0", ...(perDay.get(d) ?? []).map((r) => r.cost_usd)));
  const max = totals.reduce((m, t) => (compareDecimal(t, m) > 0 ? t : m), "0");
  const w = 720;
  const h = 160;
  const barW = w / Math.max(days.length, 1);
  return (
    <figure className="chart" data-testid="model-daily-chart">
      <svg viewBox={`0 0 ${w} ${h + 20}`} role="img" aria-label={`Cost per day by model, ${models.length} models`}>
        <line x1={0} x2={w} y1={h} y2={h} className="axis" />
        {days.map((day, i) => {
          let y = h;
          return (perDay.get(day) ?? []).map((r) => {
            const px = Math.max((ratioPerMille(r.cost_usd, max) * h) / 1000, compareDecimal(r.cost_usd, "0") > 0 ? 1 : 0);
            y -= px;
            return (
              <rect key={`${day}-${r.model}`} x={i * barW + 1} y={y} width={Math.max(barW - 2, 1)} height={px}
                style={{ fill: color(r.model ?? "?") }}>
                <title>{day} {r.model}: {formatUsd(r.cost_usd)}</title>
              </rect>
            );
          });
        })}
        <text x={0} y={h + 16} className="tick">{start}</text>
        <text x={w} y={h + 16} className="tick" textAnchor="end">{addDays(end, -1)}</text>
      </svg>
      <figcaption className="legend">
        {models.map((m) => <span key={m} style={{ ["--swatch" as string]: color(m) }}>{m}</span>)}
      </figcaption>
    </figure>
  );
}

function Breakdown({ title, rows, label }: { title: string; rows: UsageRow[]; label: (r: UsageRow) => string }) {
  return (
    <section className="card">
      <h2>{title}</h2>
      {rows.length === 0 ? <p className="empty">No usage in this range.</p> : (
        <div className="table-wrap">
          <table>
            <thead><tr><th>{title.replace("By ", "")}</th><th>Requests</th><th>Input tokens</th><th>Output tokens</th><th>Cost</th></tr></thead>
            <tbody>
              {rows.map((r, i) => (
                <tr key={i}>
                  <td>{label(r)}</td>
                  <td>{formatTokens(r.num_requests)}</td>
                  <td>{formatTokens(r.prompt_tokens)}</td>
                  <td>{formatTokens(r.completion_tokens)}</td>
                  <td>{formatUsd(r.cost_usd)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function UsagePage() {
  const today = isoDay(new Date());
  const [start, setStart] = useState(addDays(today, -29));
  const [last, setLast] = useState(today); // inclusive in the form; the API's end is exclusive
  const end = addDays(last, 1);
  const valid = start <= last;
  const q = (g: string) => (valid ? `${PATHS.usage}?start=${start}&end=${end}&group_by=${g}` : null);
  const daily = useApi<Usage>(q("day"));
  const byModel = useApi<Usage>(q("model"));
  const byKey = useApi<Usage>(q("key"));
  const modelDaily = useApi<Usage>(q("model_day"));
  const [csvGroup, setCsvGroup] = useState("day");
  const keys = useApi<ApiKey[]>(PATHS.keys);
  const keyName = (r: UsageRow) => {
    const k = keys.data?.find((x) => x.id === r.api_key_id);
    return k ? `${k.name} (${k.masked})` : `key #${r.api_key_id ?? "?"}`;
  };
  const reload = () => [daily, byModel, byKey, modelDaily].forEach((s) => s.reload());
  return (
    <>
      <PageHeader title="Usage">Tokens and cost from the billing ledger (it trails live traffic by a few seconds).</PageHeader>
      <form className="card inline-form" aria-label="Date range" onSubmit={(e) => { e.preventDefault(); reload(); }}>
        <Field label="From">
          {({ id }) => <input id={id} type="date" value={start} max={last} onChange={(e) => setStart(e.target.value)} />}
        </Field>
        <Field label="To">
          {({ id }) => <input id={id} type="date" value={last} min={start} onChange={(e) => setLast(e.target.value)} />}
        </Field>
        <button type="submit">Refresh</button>
        <Field label="Export grouped by">
          {({ id }) => (
            <select id={id} value={csvGroup} onChange={(e) => setCsvGroup(e.target.value)}>
              <option value="day">day</option><option value="model">model</option>
              <option value="key">key</option><option value="model_day">model and day</option>
            </select>
          )}
        </Field>
        {valid && (
          <a className="button" download href={`${PATHS.usageCsv}?start=${start}&end=${end}&group_by=${csvGroup}`}>
            Export CSV
          </a>
        )}
        {!valid && <ErrorText error="The start date must not be after the end date." />}
      </form>
      <Async state={daily} label="usage">
        {(u) => (
          <section className="card">
            <div className="stats">
              <div><h2>Requests</h2><p className="big" data-testid="usage-requests">{formatTokens(u.total.num_requests)}</p></div>
              <div>
                <h2>Tokens</h2>
                <p className="big" data-testid="usage-tokens">{formatTokens(u.total.prompt_tokens + u.total.completion_tokens)}</p>
                <p className="muted small">{formatTokens(u.total.prompt_tokens)} in · {formatTokens(u.total.completion_tokens)} out</p>
              </div>
              <div><h2>Cost</h2><p className="big" data-testid="usage-cost">{formatUsd(u.total.cost_usd)}</p></div>
            </div>
            {u.data.length === 0 ? <p className="empty">No usage in this range yet.</p> : <CostChart rows={u.data} start={start} end={end} />}
            <p className="sr-only">Total {formatUsd(addDecimal(...u.data.map((r) => r.cost_usd)))}</p>
          </section>
        )}
      </Async>
      <Async state={modelDaily} label="usage by model and day">
        {(u) => u.data.length === 0 ? null : (
          <section className="card"><h2>Cost per day by model</h2><ModelDailyChart rows={u.data} start={start} end={end} /></section>
        )}
      </Async>
      <div className="two-col">
        <Async state={byModel} label="usage by model">
          {(u) => <Breakdown title="By model" rows={u.data} label={(r) => r.model ?? "?"} />}
        </Async>
        <Async state={byKey} label="usage by key">
          {(u) => <Breakdown title="By key" rows={u.data} label={keyName} />}
        </Async>
      </div>
    </>
  );
}
