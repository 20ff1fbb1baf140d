import { type FormEvent, useState } from "react";

import { api, ApiError, asApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { ApiKey, ApiKeyCreated } from "../api/types";
import { formatUsd } from "../lib/money";
import { Async, ConfirmButton, CopyButton, ErrorText, Field, formatDate, PageHeader, useApi } from "../components/ui";

function status(key: ApiKey): string {
  if (key.revoked_at) return "revoked";
  if (!key.is_active) return "expired";
  return key.expires_at ? "temporary" : "active";
}

const EXPIRY_DAYS = [["", "never"], ["1", "in 1 day"], ["7", "in 7 days"], ["30", "in 30 days"], ["90", "in 90 days"]];

function limits(key: ApiKey): string {
  const parts = [key.rpm_limit ? `${key.rpm_limit.toLocaleString("en-US")} RPM` : "",
    key.tpm_limit ? `${key.tpm_limit.toLocaleString("en-US")} TPM` : ""].filter(Boolean);
  if (key.max_cost_per_request) parts.push(`≤ ${formatUsd(key.max_cost_per_request)} a request`);
  return parts.length ? parts.join(" · ") : "account's";
}

export function KeysPage() {
  const keys = useApi<ApiKey[]>(PATHS.keys);
  const [name, setName] = useState("");
  const [expiresIn, setExpiresIn] = useState("");
  const [management, setManagement] = useState(false);
  const [rpm, setRpm] = useState("");
  const [tpm, setTpm] = useState("");
  const [budget, setBudget] = useState("");
  const [created, setCreated] = useState<ApiKeyCreated>();
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [revokeError, setRevokeError] = useState<ApiError>();

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const body: Record<string, unknown> = { name, scopes: management ? ["inference", "management"] : ["inference"] };
      if (expiresIn) body.expires_at = new Date(Date.now() + Number(expiresIn) * 86_400_000).toISOString();
      if (rpm) body.rpm_limit = Number.parseInt(rpm, 10);
      if (tpm) body.tpm_limit = Number.parseInt(tpm, 10);
      if (budget) body.max_cost_per_request = budget;
      setCreated(await api<ApiKeyCreated>(PATHS.keys, { method: "POST", json: body }));
      setName("");  // the next key starts from the defaults again: no expiry, inference only, the account's limits
      setExpiresIn("");
      setManagement(false);
      setRpm("");
      setTpm("");
      setBudget("");
      keys.reload();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (key: ApiKey) => {
    setRevokeError(undefined);
    try {
      await api(PATHS.keyRevoke(key.id), { method: "POST" });
      keys.reload();
    } catch (e) {
      setRevokeError(asApiError(e));
    }
  };
  return (
    <>
      <PageHeader title="API keys">Keys authenticate your apps against the gateway. Each key acts for this account.</PageHeader>
      <form className="card inline-form" onSubmit={create} aria-label="Create a key">
        <Field label="New key name" errors={error?.fieldErrors.name}>
          {({ id, describedBy, invalid }) => (
            <input id={id} value={name} placeholder="e.g. my-app" maxLength={100} aria-invalid={invalid}
              aria-describedby={describedBy} onChange={(e) => setName(e.target.value)} />
          )}
        </Field>
        <Field label="Expires" errors={error?.fieldErrors.expires_at}>
          {({ id }) => (
            <select id={id} value={expiresIn} onChange={(e) => setExpiresIn(e.target.value)}>
              {EXPIRY_DAYS.map(([v, label]) => <option key={v} value={v}>{label}</option>)}
            </select>
          )}
        </Field>
        <Field label="Requests per minute" errors={error?.fieldErrors.rpm_limit} hint="Empty: the account's limit.">
          {({ id, describedBy, invalid }) => (
            <input id={id} inputMode="numeric" size={8} value={rpm} aria-invalid={invalid} aria-describedby={describedBy}
              onChange={(e) => setRpm(e.target.value)} />
          )}
        </Field>
        <Field label="Tokens per minute" errors={error?.fieldErrors.tpm_limit}>
          {({ id, describedBy, invalid }) => (
            <input id={id} inputMode="numeric" size={10} value={tpm} aria-invalid={invalid} aria-describedby={describedBy}
              onChange={(e) => setTpm(e.target.value)} />
          )}
        </Field>
        <Field label="Budget per request (USD)" errors={error?.fieldErrors.max_cost_per_request}
          hint="Empty: none. Applies when a request sets no max_cost.">
          {({ id, describedBy, invalid }) => (
            <input id={id} inputMode="decimal" size={10} value={budget} aria-invalid={invalid} aria-describedby={describedBy}
              placeholder="e.g. 0.01" onChange={(e) => setBudget(e.target.value)} />
          )}
        </Field>
        <div className="field">
          <label className="check">
            <input type="checkbox" checked={management} onChange={(e) => setManagement(e.target.checked)} />{" "}
            Also the management API
          </label>
          <small className="muted">Off: the key only calls models. On: it also manages this account with your role.</small>
        </div>
        <button type="submit" className="primary" disabled={busy}>{busy ? "Creating…" : "Create key"}</button>
        {error && !error.fieldErrors.name && !error.fieldErrors.rpm_limit && !error.fieldErrors.tpm_limit &&
          !error.fieldErrors.max_cost_per_request &&
          <ErrorText error={error} />}
      </form>
      {created && (
        <section className="card secret" aria-live="polite" data-testid="new-secret">
          <h2>Key “{created.name}” created</h2>
          <p className="warning" role="note">
            Copy this secret now. It is shown only once: Hearth stores a hash of it, not the key itself.
          </p>
          <div className="secret-row">
            <code data-testid="secret">{created.secret}</code>
            <CopyButton text={created.secret} label="Copy secret" />
          </div>
          <button type="button" className="link" onClick={() => setCreated(undefined)}>I've stored it, hide it</button>
        </section>
      )}
      <ErrorText error={revokeError} />
      <Async state={keys} label="API keys" isEmpty={(l) => l.length === 0} empty="No keys yet. Create one above to call the API.">
        {(list) => (
          <div className="table-wrap">
            <table>
              <thead>
                <tr><th>Name</th><th>Key</th><th>Scopes</th><th>Limits</th><th>Created</th><th>Last used</th><th>Expires</th><th>Status</th><th><span className="sr-only">Actions</span></th></tr>
              </thead>
              <tbody>
                {list.map((key) => (
                  <tr key={key.id} data-testid={`key-row-${key.id}`}>
                    <td>{key.name}</td>
                    <td><code>{key.masked}</code></td>
                    <td data-testid="key-scopes">{key.scopes.join(", ")}</td>
                    <td>{limits(key)}</td>
                    <td>{formatDate(key.created_at)}</td>
                    <td>{key.last_used_at ? formatDate(key.last_used_at) : "never"}</td>
                    <td data-testid="key-expires">{key.expires_at ? formatDate(key.expires_at) : "never"}</td>
                    <td><span className={`badge ${status(key)}`}>{status(key)}</span></td>
                    <td>
                      {key.is_active && (
                        <ConfirmButton label="Revoke" confirm={`Revoke “${key.name}”? Apps using it stop working at once.`}
                          onConfirm={() => revoke(key)} />
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Async>
    </>
  );
}
