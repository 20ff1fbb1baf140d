import { type FormEvent, useState } from "react";

import { api, ApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { Billing, CreditsResult } from "../api/types";
import { Async, ErrorText, Field, PageHeader, useApi } from "../components/ui";
import { compareDecimal, formatUsd } from "../lib/money";

export function BillingPage() {
  const billing = useApi<Billing>(PATHS.billing);
  const [amount, setAmount] = useState("10.00");
  const [error, setError] = useState<ApiError>();
  const [result, setResult] = useState<CreditsResult>();
  const buy = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    try {
      setResult(await api<CreditsResult>(PATHS.credits, { method: "POST", json: { amount_usd: amount } }));
      billing.reload();
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(String(e), 0));
    }
  };
  return (
    <>
      <PageHeader title="Billing">Spend this month, your limit and credits. Amounts in USD.</PageHeader>
      <Async state={billing} label="billing">
        {(b) => (
          <>
            <section className="stats">
              <div className="card stat"><h2>Spent this month</h2><p className="big" data-testid="month-to-date">{formatUsd(b.month_to_date_usd)}</p></div>
              <div className="card stat">
                <h2>Monthly spend limit</h2>
                <p className="big">{compareDecimal(b.monthly_spend_limit_usd, "0") > 0 ? formatUsd(b.monthly_spend_limit_usd) : "none"}</p>
                <p className="muted small">Requests are refused once this month's spend passes the limit plus credits.</p>
              </div>
              <div className="card stat"><h2>Credits</h2><p className="big">{formatUsd(b.credit_balance_usd)}</p></div>
            </section>
            <section className="card">
              <h2>Payment</h2>
              <dl className="facts">
                <dt>Payment method</dt><dd>{b.has_payment_method ? "Card on file" : "None"}</dd>
                <dt>Payment status</dt>
                <dd><span className={`badge ${b.payment_status === "ok" ? "ready" : "failed"}`}>{b.payment_status}</span></dd>
                <dt>Invoicing</dt>
                <dd>
                  {b.mode === "stripe"
                    ? "Usage is invoiced monthly through Stripe; invoices are e-mailed by Stripe."
                    : "This installation meters and limits usage but does not invoice (no Stripe key is configured)."}
                </dd>
              </dl>
            </section>
            {b.mode === "stripe" && (
              <form className="card inline-form" onSubmit={buy} aria-label="Buy credits">
                <Field label="Buy credits (USD)" errors={error?.fieldErrors.amount_usd} hint="Charged to the card on file.">
                  {({ id, describedBy, invalid }) => (
                    <input id={id} inputMode="decimal" value={amount} aria-invalid={invalid} aria-describedby={describedBy}
                      pattern="\d+(\.\d{1,2})?" onChange={(e) => setAmount(e.target.value)} />
                  )}
                </Field>
                <button type="submit" className="primary" disabled={!b.has_payment_method}>Buy</button>
                {error && !error.fieldErrors.amount_usd && <ErrorText error={error} />}
                {result && <p className="ok">Payment {result.status}; credits now {formatUsd(result.credit_balance_usd)}.</p>}
              </form>
            )}
          </>
        )}
      </Async>
    </>
  );
}
