import { type FormEvent, useEffect, useReducer, useRef, useState } from "react";

import { api, ApiError, asApiError, csrfToken, parseErrorBody } from "../api/client";
import { PATHS } from "../api/paths";
import type { Adapter, BaseModel } from "../api/types";
import { Async, ConfirmButton, ErrorText, Field, formatDate, PageHeader, useApi } from "../components/ui";
import { initialUpload, isBusy, pickAdapterFiles, uploadPercent, uploadReducer } from "../lib/upload";

const POLL_MS = 1000;

function formatBytes(n: number | null): string {
  if (n === null) return "—";
  return n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

export function AdaptersPage() {
  const adapters = useApi<Adapter[]>(PATHS.adapters);
  const models = useApi<BaseModel[]>(PATHS.models);
  const [state, dispatch] = useReducer(uploadReducer, initialUpload);
  const [name, setName] = useState("");
  const [base, setBase] = useState("");
  const [files, setFiles] = useState<File[]>([]);
  const [pickError, setPickError] = useState<string>();
  const [deleteError, setDeleteError] = useState<ApiError>();
  const xhr = useRef<XMLHttpRequest | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  useEffect(() => {
    const firstChat = chatModels(models.data)[0];  // LoRA adapters go on chat models, not embedding models
    if (!base && firstChat) setBase(firstChat.slug);
  }, [base, models.data]);
  useEffect(() => () => xhr.current?.abort(), []);

  // Poll the new adapter until validation settles.
  const validatingUid = state.phase === "validating" ? state.uid : null;
  const reloadList = adapters.reload;
  useEffect(() => {
    if (!validatingUid) return;
    let live = true;
    let timer = 0;
    const poll = async () => {
      try {
        const a = await api<Adapter>(PATHS.adapter(validatingUid));
        if (!live) return;
        dispatch({ type: "polled", status: a.status, failureReason: a.failure_reason });
        if (a.status === "ready" || a.status === "failed") reloadList();
        else timer = window.setTimeout(poll, POLL_MS);
      } catch (e) {
        if (live) timer = window.setTimeout(poll, POLL_MS * 3); // a blip; keep polling
        void e;
      }
    };
    timer = window.setTimeout(poll, POLL_MS);
    return () => {
      live = false;
      window.clearTimeout(timer);
    };
  }, [validatingUid, reloadList]);

  const upload = (event: FormEvent) => {
    event.preventDefault();
    const picked = pickAdapterFiles(files);
    if ("error" in picked) {
      setPickError(picked.error);
      return;
    }
    setPickError(undefined);
    const form = new FormData();
    form.append("name", name);
    form.append("base_model", base);
    for (const f of picked.files) form.append("files", f, f.name);
    const total = picked.files.reduce((n, f) => n + f.size, 0);
    dispatch({ type: "start", total });
    const request = new XMLHttpRequest();
    xhr.current = request;
    request.open("POST", PATHS.adapters);
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("Accept", "application/json");
    request.upload.onprogress = (e) => {
      if (e.lengthComputable) dispatch({ type: "progress", loaded: e.loaded, total: e.total });
    };
    request.onload = () => {
      let body: unknown;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = undefined;
      }
      if (request.status >= 200 && request.status < 300) {
        const a = body as Adapter;
        dispatch({ type: "accepted", uid: a.uid, status: a.status, failureReason: a.failure_reason });
        setName("");
        setFiles([]);
        if (fileInput.current) fileInput.current.value = "";
        adapters.reload();
      } else {
        const err = parseErrorBody(request.status, body);
        dispatch({ type: "rejected", message: err.message, fieldErrors: err.fieldErrors });
      }
    };
    request.onerror = () => dispatch({ type: "rejected", message: "The upload failed: can't reach Hearth." });
    request.onabort = () => dispatch({ type: "rejected", message: "The upload was cancelled." });
    request.send(form);
  };

  const remove = async (a: Adapter) => {
    setDeleteError(undefined);
    try {
      await api(PATHS.adapter(a.uid), { method: "DELETE" });
      adapters.reload();
    } catch (e) {
      setDeleteError(asApiError(e));
    }
  };
  const fe = state.phase === "error" ? state.fieldErrors : {};
  const percent = uploadPercent(state);
  return (
    <>
      <PageHeader title="Adapters">
        Upload a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors, or a .zip / .tar.gz of the folder).
        It is served on its base model's workers at the base model's price.
      </PageHeader>
      <form className="card" onSubmit={upload} aria-label="Upload an adapter">
        <div className="row">
          <Field label="Name" errors={fe.name} hint="Lowercase letters, digits, '-' and '_'.">
            {({ id, describedBy, invalid }) => (
              <input id={id} value={name} required maxLength={64} aria-invalid={invalid} aria-describedby={describedBy}
                onChange={(e) => setName(e.target.value)} />
            )}
          </Field>
          <Field label="Base model" errors={fe.base_model}>
            {({ id, describedBy }) => (
              <select id={id} value={base} aria-describedby={describedBy} onChange={(e) => setBase(e.target.value)}>
                {chatModels(models.data).map((m) => <option key={m.slug} value={m.slug}>{m.display_name}</option>)}
              </select>
            )}
          </Field>
        </div>
        <Field label="Files" errors={fe.files ?? (pickError ? [pickError] : undefined)}
          hint="Select both files of the adapter folder, or one archive.">
          {({ id, describedBy, invalid }) => (
            <input id={id} ref={fileInput} type="file" multiple accept=".json,.safetensors,.zip,.gz,.tgz,.tar"
              aria-invalid={invalid} aria-describedby={describedBy}
              onChange={(e) => setFiles(Array.from(e.target.files ?? []))} />
          )}
        </Field>
        <div className="row">
          <button type="submit" className="primary" disabled={isBusy(state) || !name || files.length === 0}>Upload</button>
          {state.phase === "uploading" && <button type="button" onClick={() => xhr.current?.abort()}>Cancel</button>}
        </div>
        {state.phase !== "idle" && (
          <div className="upload-status" aria-live="polite" data-testid="upload-status" data-phase={state.phase}>
            {state.phase === "uploading" && (
              <>
                <progress max={100} value={percent} aria-label="Upload progress" /> <span>{percent}% uploaded</span>
              </>
            )}
            {state.phase === "validating" && <p>Uploaded. Validating against the base model ({state.status})…</p>}
            {state.phase === "ready" && <p className="ok">Ready: you can call it now.</p>}
            {state.phase === "failed" && <p className="error" role="alert">Validation failed: {state.reason}</p>}
            {state.phase === "error" && Object.keys(state.fieldErrors).length === 0 && <ErrorText error={state.message} />}
          </div>
        )}
      </form>
      <ErrorText error={deleteError} />
      <Async state={adapters} label="adapters" isEmpty={(l) => l.length === 0} empty="No adapters yet.">
        {(list) => (
          <div className="table-wrap">
            <table>
              <thead>
                <tr><th>Name</th><th>Base</th><th>Status</th><th>Rank</th><th>Size</th><th>Uploaded</th><th><span className="sr-only">Actions</span></th></tr>
              </thead>
              <tbody>
                {list.map((a) => (
                  <tr key={a.uid} data-testid={`adapter-${a.name}`}>
                    <td><strong>{a.name}</strong><br /><code className="small">{a.model}</code></td>
                    <td>{a.base_model}</td>
                    <td>
                      <span className={`badge ${a.status}`} data-testid="adapter-status">{a.status}</span>
                      {a.failure_reason && <div className="error small">{a.failure_reason}</div>}
                    </td>
                    <td>{a.rank ?? "—"}</td>
                    <td>{formatBytes(a.size_bytes)}</td>
                    <td>{formatDate(a.created_at)}</td>
                    <td><ConfirmButton label="Delete" confirm={`Delete “${a.name}”?`} onConfirm={() => remove(a)} /></td>
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

function chatModels(models: BaseModel[] | null | undefined): BaseModel[] {
  return (models ?? []).filter((m) => m.kind === "chat");
}
