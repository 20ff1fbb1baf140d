import { type FormEvent, useState } from "react";
import { Link, Navigate, useLocation, useNavigate } from "react-router-dom";

import { api, ApiError, asApiError } from "../api/client";
import { PATHS } from "../api/paths";
import { useAuth } from "../auth";
import { ErrorText, Field } from "../components/ui";

function AuthForm({ mode }: { mode: "login" | "signup" }) {
  const { me, refresh } = useAuth();
  const navigate = useNavigate();
  const location = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [accountName, setAccountName] = useState("");
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  if (me) return <Navigate to="/" replace />;
  const from = (location.state as { from?: string } | null)?.from ?? "/";

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      if (mode === "signup") {
        await api(PATHS.signup, { method: "POST", json: { email, password, ...(accountName ? { account_name: accountName } : {}) } });
      }
      await api(PATHS.login, { method: "POST", json: { email, password } });
      await refresh();
      navigate(from, { replace: true });
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  const fe = error?.fieldErrors ?? {};
  const title = mode === "signup" ? "Create your Hearth account" : "Log in to Hearth";
  return (
    <div className="auth">
      <form className="card" onSubmit={submit} noValidate aria-labelledby="auth-title">
        <div className="brand">Hearth</div>
        <h1 id="auth-title">{title}</h1>
        {error && Object.keys(fe).length === 0 && <ErrorText error={error} />}
        <Field label="E-mail" errors={fe.email}>
          {({ id, describedBy, invalid }) => (
            <input id={id} type="email" autoComplete="email" required value={email} aria-invalid={invalid}
              aria-describedby={describedBy} onChange={(e) => setEmail(e.target.value)} />
          )}
        </Field>
        <Field label="Password" errors={fe.password} hint={mode === "signup" ? "At least 10 characters." : undefined}>
          {({ id, describedBy, invalid }) => (
            <input id={id} type="password" required value={password} aria-invalid={invalid} aria-describedby={describedBy}
              autoComplete={mode === "signup" ? "new-password" : "current-password"}
              onChange={(e) => setPassword(e.target.value)} />
          )}
        </Field>
        {mode === "signup" && (
          <Field label="Account name (optional)" errors={fe.account_name} hint="Defaults to your e-mail's name part.">
            {({ id, describedBy, invalid }) => (
              <input id={id} value={accountName} aria-invalid={invalid} aria-describedby={describedBy}
                onChange={(e) => setAccountName(e.target.value)} />
            )}
          </Field>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Please wait…" : mode === "signup" ? "Sign up" : "Log in"}
        </button>
        <p className="muted">
          {mode === "signup" ? <>Have an account? <Link to="/login">Log in</Link></> : <>New here? <Link to="/signup">Create an account</Link></>}
        </p>
      </form>
    </div>
  );
}

export const LoginPage = () => <AuthForm mode="login" />;
export const SignupPage = () => <AuthForm mode="signup" />;
