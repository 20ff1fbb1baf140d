import { type FormEvent, useEffect, useState } from "react";

import { api, ApiError, asApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { Billing, CreditsResult, DashboardConfig, Invoice, ListOf, PaymentMethod, SpendLimit } from "../api/types";
import { CardForm } from "../components/CardForm";
import { billingChanged } from "../components/SpendBanner";
import { Async, ConfirmButton, ErrorText, Field, PageHeader, useApi } from "../components/ui";
import { compareDecimal, formatTokens, formatUsd, ratioPerMille } from "../lib/money";


function SpendLimitCard({ limit, onSaved }: { limit: SpendLimit; onSaved: () => void }) {
  const [value, setValue] = useState(limit.monthly_spend_limit_usd);
  const [error, setError] = useState<ApiError>();
  const [saved, setSaved] = useState(false);
  useEffect(() => setValue(limit.monthly_spend_limit_usd), [limit.monthly_spend_limit_usd]);
  const save = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    setSaved(false);
    try {
      await api(PATHS.spendLimit, { method: "PUT", json: { monthly_spend_limit_usd: value } });
      setSaved(true);
      onSaved();
    } catch (e) {
      setError(asApiError(e));
    }
  };
  const used = ratioPerMille(limit.month_to_date_usd, limit.monthly_spend_limit_usd);
  return (
    <section className="card">
      <h2>Monthly spend limit</h2>
      <p>
        <span data-testid="month-to-date">{formatUsd(limit.month_to_date_usd)}</span> spent this month of{" "}
        <span data-testid="spend-limit">{formatUsd(limit.monthly_spend_limit_usd)}</span>
      </p>
      <meter min={0} max={1000} low={800} high={999} optimum={0} value={Math.min(used, 1000)}
        aria-label="Share of the spend limit used" className="spend-meter" />
      <form className="inline-form" onSubmit={save} aria-label="Spend limit">
        <Field label="New limit (USD)" errors={error?.fieldErrors.monthly_spend_limit_usd}
          hint="Requests are refused once this month's spend passes the limit plus credits. Takes effect within a second.">
          {({ id, describedBy, invalid }) => (
            <input id={id} inputMode="decimal" value={value} aria-invalid={invalid} aria-describedby={describedBy}
              onChange={(e) => setValue(e.target.value)} />
          )}
        </Field>
        <button type="submit">Save limit</button>
        {error && !error.fieldErrors.monthly_spend_limit_usd && <ErrorText error={error} />}
        {saved && <p className="ok" role="status">Limit saved.</p>}
      </form>
    </section>
  );
}

function Cards({ config, onChange }: { config: DashboardConfig; onChange: () => void }) {
  const cards = useApi<ListOf<PaymentMethod>>(PATHS.paymentMethods);
  const [error, setError] = useState<ApiError>();
  const changed = () => {
    cards.reload();
    onChange();
  };
  const remove = async (id: string) => {
    setError(undefined);
    try {
      await api(PATHS.paymentMethodDetail(id), { method: "DELETE" });
      changed();
    } catch (e) {
      setError(asApiError(e));
    }
  };
  return (
    <section className="card">
      <h2>Cards</h2>
      <Async state={cards} label="cards" isEmpty={(c) => c.data.length === 0} empty="No card on file.">
        {(c) => (
          <ul className="plain-list" aria-label="Cards on file">
            {c.data.map((pm) => (
              <li key={pm.id}>
                <span>{pm.brand ?? "card"} ···· {pm.last4} <span className="muted">exp. {pm.exp_month}/{pm.exp_year}</span></span>
                {pm.is_default && <span className="badge ready">default</span>}
                <ConfirmButton label="Remove" confirm={`Remove the card ending ${pm.last4}?`} onConfirm={() => remove(pm.id)} />
              </li>
            ))}
          </ul>
        )}
      </Async>
      <ErrorText error={error} />
      <CardForm config={config} onAdded={changed} />
    </section>
  );
}

function Credits({ billing, onBought }: { billing: Billing; onBought: () => void }) {
  const [amount, setAmount] = useState("10.00");
  const [error, setError] = useState<ApiError>();
  const [result, setResult] = useState<CreditsResult>();
  const buy = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    try {
      setResult(await api<CreditsResult>(PATHS.credits, { method: "POST", json: { amount_usd: amount } }));
      onBought();
    } catch (e) {
      setError(asApiError(e));
    }
  };
  return (
    <form className="card inline-form" onSubmit={buy} aria-label="Buy credits">
      <Field label="Buy credits (USD)" errors={error?.fieldErrors.amount_usd}
        hint={billing.has_payment_method ? "Charged to the default card." : "Add a card first."}>
        {({ id, describedBy, invalid }) => (
          <input id={id} inputMode="decimal" value={amount} aria-invalid={invalid} aria-describedby={describedBy}
            pattern="\d+(\.\d{1,2})?" onChange={(e) => setAmount(e.target.value)} />
        )}
      </Field>
      <button type="submit" className="primary" disabled={!billing.has_payment_method}>Buy</button>
      {error && !error.fieldErrors.amount_usd && <ErrorText error={error} />}
      {result && <p className="ok" role="status">Payment {result.status}; credits now {formatUsd(result.credit_balance_usd)}.</p>}
    </form>
  );
}

function Invoices() {
  const invoices = useApi<ListOf<Invoice>>(PATHS.invoices);
  return (
    <section className="card">
      <h2>Invoices</h2>
      <Async state={invoices} label="invoices" isEmpty={(i) => i.data.length === 0}
        empty="No invoices yet: usage is invoiced after each month ends.">
        {(i) => (
          <div className="table-wrap">
            <table>
              <thead><tr><th>Month</th><th>Status</th><th>Amount</th><th>Lines</th></tr></thead>
              <tbody>
                {i.data.map((inv) => (
                  <tr key={inv.id}>
                    <td>{inv.period}</td>
                    <td><span className={`badge ${inv.status === "paid" ? "ready" : inv.status === "payment_failed" ? "failed" : "pending"}`}>{inv.status}</span></td>
                    <td>{formatUsd(inv.amount_usd)}</td>
                    <td>
                      <ul className="plain-list small">
                        {inv.lines.map((line, n) => (
                          <li key={n}>
                            {line.kind === "usage"
                              ? `${line.model}: ${formatTokens(line.prompt_tokens ?? 0)} in, ${formatTokens(line.completion_tokens ?? 0)} out`
                              : "Prepaid credits applied"}{" "}
                            — {formatUsd(line.amount_usd)}
                          </li>
                        ))}
                      </ul>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Async>
    </section>
  );
}

export function BillingPage() {
  const billing = useApi<Billing>(PATHS.billing);
  const limit = useApi<SpendLimit>(PATHS.spendLimit);
  const config = useApi<DashboardConfig>(PATHS.config);
  const reload = () => {
    billing.reload();
    limit.reload();
    billingChanged();
  };
  return (
    <>
      <PageHeader title="Billing">Spend this month, your limit, cards, credits and invoices. Amounts in USD.</PageHeader>
      <Async state={billing} label="billing">
        {(b) => (
          <>
            <section className="stats">
              <div className="card stat"><h2>Spent this month</h2><p className="big">{formatUsd(b.month_to_date_usd)}</p></div>
              <div className="card stat">
                <h2>Limit</h2>
                <p className="big">{compareDecimal(b.monthly_spend_limit_usd, "0") > 0 ? formatUsd(b.monthly_spend_limit_usd) : "none"}</p>
              </div>
              <div className="card stat"><h2>Credits</h2><p className="big" data-testid="credit-balance">{formatUsd(b.credit_balance_usd)}</p></div>
            </section>
            <Async state={limit} label="spend limit">{(l) => <SpendLimitCard limit={l} onSaved={reload} />}</Async>
            <section className="card">
              <h2>Payment</h2>
              <dl className="facts">
                <dt>Payment status</dt>
                <dd><span className={`badge ${b.payment_status === "ok" ? "ready" : "failed"}`}>{b.payment_status}</span></dd>
                <dt>Invoicing</dt>
                <dd>
                  {b.mode === "stripe"
                    ? "Usage is invoiced monthly through Stripe and charged to the default card."
                    : "This installation meters and limits usage but does not invoice (no Stripe key is configured)."}
                </dd>
              </dl>
            </section>
            {b.mode === "stripe" && config.data && <Cards config={config.data} onChange={reload} />}
            {b.mode === "stripe" && <Credits billing={b} onBought={reload} />}
            {b.mode === "stripe" && <Invoices />}
          </>
        )}
      </Async>
    </>
  );
}
