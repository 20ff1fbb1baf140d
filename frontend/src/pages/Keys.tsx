import { type FormEvent, useState } from "react";

import { api, ApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { ApiKey, ApiKeyCreated } from "../api/types";
import { Async, ConfirmButton, CopyButton, ErrorText, Field, formatDate, PageHeader, useApi } from "../components/ui";

function status(key: ApiKey): string {
  if (key.revoked_at) return "revoked";
  if (!key.is_active) return "expired";
  return key.expires_at ? "temporary" : "active";
}

export function KeysPage() {
  const keys = useApi<ApiKey[]>(PATHS.keys);
  const [name, setName] = useState("");
  const [created, setCreated] = useState<ApiKeyCreated>();
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [revokeError, setRevokeError] = useState<ApiError>();

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      setCreated(await api<ApiKeyCreated>(PATHS.keys, { method: "POST", json: { name } }));
      setName("");
      keys.reload();
    } catch (e) {
      setError(e instanceof ApiError ? e : new ApiError(String(e), 0));
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
      setRevokeError(e instanceof ApiError ? e : new ApiError(String(e), 0));
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
        <button type="submit" className="primary" disabled={busy}>{busy ? "Creating…" : "Create key"}</button>
        {error && !error.fieldErrors.name && <ErrorText error={error} />}
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
                <tr><th>Name</th><th>Key</th><th>Created</th><th>Last used</th><th>Status</th><th><span className="sr-only">Actions</span></th></tr>
              </thead>
              <tbody>
                {list.map((key) => (
                  <tr key={key.id} data-testid={`key-row-${key.id}`}>
                    <td>{key.name}</td>
                    <td><code>{key.masked}</code></td>
                    <td>{formatDate(key.created_at)}</td>
                    <td>{key.last_used_at ? formatDate(key.last_used_at) : "never"}</td>
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
