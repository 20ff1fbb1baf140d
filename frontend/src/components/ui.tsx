import { type ReactNode, useCallback, useEffect, useId, useState } from "react";

import { api, ApiError } from "../api/client";

export interface Loadable<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
}

/** GET a path; `path` null waits. Reload keeps showing the old data while the new request runs. */
export function useApi<T>(path: string | null): Loadable<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: path !== null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return;
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    api<T>(path).then(
      (data) => live && setState({ data, loading: false }),
      (error: unknown) =>
        live && setState({ error: error instanceof ApiError ? error : new ApiError(String(error), 0), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [path, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

/** Loading, error and empty states in one place; renders children only with data. */
export function Async<T>(props: {
  state: Loadable<T>;
  label: string;
  isEmpty?: (data: T) => boolean;
  empty?: ReactNode;
  children: (data: T) => ReactNode;
}) {
  const { state, label } = props;
  if (state.data === undefined && state.loading) {
    return <p className="muted" role="status" aria-busy="true">Loading {label}…</p>;
  }
  if (state.error && state.data === undefined) {
    return (
      <div className="error" role="alert">
        <p>Couldn't load {label}: {state.error.message}</p>
        <button type="button" onClick={state.reload}>Try again</button>
      </div>
    );
  }
  if (state.data === undefined) return null;
  if (props.isEmpty?.(state.data)) return <div className="empty">{props.empty ?? `No ${label} yet.`}</div>;
  return <>{props.children(state.data)}</>;
}

export function PageHeader({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <header className="page-header">
      <h1>{title}</h1>
      {children && <p className="muted">{children}</p>}
    </header>
  );
}

export function ErrorText({ error }: { error: ApiError | string | undefined | null }) {
  if (!error) return null;
  const text = typeof error === "string" ? error : error.message;
  return <p className="error" role="alert">{text}</p>;
}

/** A labelled input with its DRF field errors, linked by aria-describedby. */
export function Field(props: {
  label: string;
  errors?: string[];
  hint?: string;
  children: (ids: { id: string; describedBy: string | undefined; invalid: boolean }) => ReactNode;
}) {
  const id = useId();
  const errId = `${id}-err`;
  const hintId = `${id}-hint`;
  const describedBy = [props.errors?.length ? errId : "", props.hint ? hintId : ""].filter(Boolean).join(" ") || undefined;
  return (
    <div className="field">
      <label htmlFor={id}>{props.label}</label>
      {props.children({ id, describedBy, invalid: Boolean(props.errors?.length) })}
      {props.hint && <small id={hintId} className="muted">{props.hint}</small>}
      {props.errors?.length ? (
        <small id={errId} className="field-error" role="alert">{props.errors.join(" ")}</small>
      ) : null}
    </div>
  );
}

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Clipboard needs a secure context; fall back to a selection the user can copy.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    setCopied(true);
    window.setTimeout(() => setCopied(false), 2000);
  };
  return (
    <button type="button" onClick={copy} aria-live="polite">
      {copied ? "Copied" : label}
    </button>
  );
}

/** A destructive action that asks once, inline (keyboard-reachable, no window.confirm). */
export function ConfirmButton(props: { label: string; confirm: string; onConfirm: () => Promise<void> | void }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  if (!asking) {
    return <button type="button" className="danger-outline" onClick={() => setAsking(true)}>{props.label}</button>;
  }
  return (
    <span className="confirm" role="group" aria-label={props.confirm}>
      <span>{props.confirm}</span>
      <button
        type="button"
        className="danger"
        disabled={busy}
        autoFocus
        onClick={async () => {
          setBusy(true);
          try {
            await props.onConfirm();
          } finally {
            setBusy(false);
            setAsking(false);
          }
        }}
      >
        Yes, {props.label.toLowerCase()}
      </button>
      <button type="button" onClick={() => setAsking(false)}>Cancel</button>
    </span>
  );
}

export function formatDate(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString("en-US", { dateStyle: "medium", timeStyle: "short" });
}

export function CodeBlock({ code, label }: { code: string; label: string }) {
  return (
    <div className="code">
      <div className="code-bar">
        <span>{label}</span>
        <CopyButton text={code} />
      </div>
      <pre tabIndex={0}><code>{code}</code></pre>
    </div>
  );
}
