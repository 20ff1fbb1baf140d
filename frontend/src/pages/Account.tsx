import { type FormEvent, useState } from "react";

import { api, ApiError, asApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { AccountDetail, Member, RateLimit } from "../api/types";
import { useAuth } from "../auth";
import { Async, ConfirmButton, ErrorText, Field, formatDate, PageHeader, useApi } from "../components/ui";

function LimitRow({ label, unit, limit }: { label: string; unit: string; limit: RateLimit }) {
  const used = limit.remaining === null ? null : limit.limit - limit.remaining;
  return (
    <>
      <dt>{label}</dt>
      <dd data-testid={`limit-${unit}`}>
        {limit.limit.toLocaleString("en-US")} {unit} per minute
        {used !== null && <span className="muted"> · {used.toLocaleString("en-US")} in use now</span>}
      </dd>
    </>
  );
}

export function AccountPage() {
  const { me, refresh } = useAuth();
  const account = useApi<AccountDetail>(PATHS.account);
  const members = useApi<Member[]>(PATHS.members);
  const role = me?.memberships[0]?.role ?? "member";
  const canManage = role === "owner" || role === "admin";
  const [name, setName] = useState<string>();
  const [nameError, setNameError] = useState<ApiError>();
  const [email, setEmail] = useState("");
  const [newRole, setNewRole] = useState("member");
  const [addError, setAddError] = useState<ApiError>();
  const [memberError, setMemberError] = useState<ApiError>();
  const isOwner = role === "owner";
  const myEmail = me?.user.email;

  const setRole = async (m: Member, value: string) => {
    setMemberError(undefined);
    try {
      await api(PATHS.member(m.id), { method: "PATCH", json: { role: value } });
      members.reload();
      await refresh();
    } catch (e) {
      setMemberError(asApiError(e));
    }
  };
  const remove = async (m: Member) => {
    setMemberError(undefined);
    try {
      await api(PATHS.member(m.id), { method: "DELETE" });
      members.reload();
      if (m.email === myEmail) await refresh();
    } catch (e) {
      setMemberError(asApiError(e));
    }
  };

  const rename = async (event: FormEvent) => {
    event.preventDefault();
    setNameError(undefined);
    try {
      await api(PATHS.account, { method: "PATCH", json: { name } });
      setName(undefined);
      account.reload();
      await refresh();
    } catch (e) {
      setNameError(asApiError(e));
    }
  };
  const add = async (event: FormEvent) => {
    event.preventDefault();
    setAddError(undefined);
    try {
      await api(PATHS.members, { method: "POST", json: { email, role: newRole } });
      setEmail("");
      members.reload();
    } catch (e) {
      setAddError(asApiError(e));
    }
  };
  return (
    <>
      <PageHeader title="Account">Who can use this account, and what it is called.</PageHeader>
      <Async state={account} label="the account">
        {(a) => (
          <form className="card inline-form" onSubmit={rename} aria-label="Account name">
            <Field label="Account name" errors={nameError?.fieldErrors.name} hint={`Your models are named accounts/${a.slug}/models/…`}>
              {({ id, describedBy, invalid }) => (
                <input id={id} value={name ?? a.name} disabled={!canManage} aria-invalid={invalid} aria-describedby={describedBy}
                  onChange={(e) => setName(e.target.value)} />
              )}
            </Field>
            {canManage && <button type="submit" disabled={name === undefined || name === a.name}>Save</button>}
            {nameError && !nameError.fieldErrors.name && <ErrorText error={nameError} />}
          </form>
        )}
      </Async>
      <Async state={account} label="rate limits">
        {(a) => (
          <section className="card">
            <h2>Rate limits</h2>
            <dl className="facts">
              <LimitRow label="Requests" unit="requests" limit={a.rate_limits.rpm} />
              <LimitRow label="Tokens" unit="tokens" limit={a.rate_limits.tpm} />
            </dl>
            <p className="muted small">Shared by all of the account's keys; a key may have lower limits of its own.</p>
          </section>
        )}
      </Async>
      <section className="card">
        <h2>Members</h2>
        <Async state={members} label="members" isEmpty={(l) => l.length === 0}>
          {(list) => (
            <div className="table-wrap">
              <table>
                <thead><tr><th>E-mail</th><th>Role</th><th>Since</th><th><span className="sr-only">Actions</span></th></tr></thead>
                <tbody>
                  {list.map((m) => (
                    <tr key={m.id} data-testid={`member-${m.email}`}>
                      <td>{m.email}</td>
                      <td>
                        {isOwner ? (
                          <select aria-label={`Role of ${m.email}`} value={m.role} onChange={(e) => void setRole(m, e.target.value)}>
                            <option value="member">member</option><option value="admin">admin</option><option value="owner">owner</option>
                          </select>
                        ) : <span className="badge">{m.role}</span>}
                      </td>
                      <td>{formatDate(m.created_at)}</td>
                      <td>
                        {(canManage || m.email === myEmail) && (
                          <ConfirmButton label={m.email === myEmail ? "Leave" : "Remove"}
                            confirm={m.email === myEmail ? "Leave this account?" : `Remove ${m.email}? Their keys here are revoked.`}
                            onConfirm={() => remove(m)} />
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Async>
        <ErrorText error={memberError} />
        {canManage && (
          <form className="inline-form" onSubmit={add} aria-label="Add a member">
            <Field label="E-mail of someone who has signed up" errors={addError?.fieldErrors.email}>
              {({ id, describedBy, invalid }) => (
                <input id={id} type="email" value={email} aria-invalid={invalid} aria-describedby={describedBy}
                  onChange={(e) => setEmail(e.target.value)} />
              )}
            </Field>
            <Field label="Role" errors={addError?.fieldErrors.role}>
              {({ id }) => (
                <select id={id} value={newRole} onChange={(e) => setNewRole(e.target.value)}>
                  <option value="member">member</option><option value="admin">admin</option><option value="owner">owner</option>
                </select>
              )}
            </Field>
            <button type="submit" disabled={!email}>Add member</button>
            {addError && !addError.fieldErrors.email && !addError.fieldErrors.role && <ErrorText error={addError} />}
          </form>
        )}
      </section>
    </>
  );
}
