// The adapter upload as a state machine: choose files -> send them (XMLHttpRequest, for upload progress) ->
// the control plane validates in the background (poll) -> ready or failed with a reason. Pure, so it is tested
// without a browser; the component feeds it events.

export type AdapterStatus = "pending" | "validating" | "ready" | "failed";

export type UploadState =
  | { phase: "idle" }
  | { phase: "uploading"; loaded: number; total: number }
  | { phase: "validating"; uid: string; status: AdapterStatus }
  | { phase: "ready"; uid: string }
  | { phase: "failed"; uid: string; reason: string }
  | { phase: "error"; message: string; fieldErrors: Record<string, string[]> };

export type UploadEvent =
  | { type: "start"; total: number }
  | { type: "progress"; loaded: number; total: number }
  | { type: "accepted"; uid: string; status: AdapterStatus; failureReason?: string | null }
  | { type: "polled"; status: AdapterStatus; failureReason?: string | null }
  | { type: "rejected"; message: string; fieldErrors?: Record<string, string[]> }
  | { type: "reset" };

export const initialUpload: UploadState = { phase: "idle" };

function settle(uid: string, status: AdapterStatus, failureReason?: string | null): UploadState {
  if (status === "ready") return { phase: "ready", uid };
  if (status === "failed") return { phase: "failed", uid, reason: failureReason || "Validation failed." };
  return { phase: "validating", uid, status };
}

export function uploadReducer(state: UploadState, event: UploadEvent): UploadState {
  switch (event.type) {
    case "reset":
      return initialUpload;
    case "start":
      // A new upload may start from any settled state, never while one is in flight.
      return state.phase === "uploading" || state.phase === "validating"
        ? state
        : { phase: "uploading", loaded: 0, total: event.total };
    case "progress":
      if (state.phase !== "uploading") return state;
      // Progress never goes backwards and never past the total.
      return {
        phase: "uploading",
        total: event.total || state.total,
        loaded: Math.min(Math.max(state.loaded, event.loaded), event.total || state.total),
      };
    case "accepted":
      return state.phase === "uploading" ? settle(event.uid, event.status, event.failureReason) : state;
    case "polled":
      return state.phase === "validating" ? settle(state.uid, event.status, event.failureReason) : state;
    case "rejected":
      return state.phase === "uploading" || state.phase === "validating"
        ? { phase: "error", message: event.message, fieldErrors: event.fieldErrors ?? {} }
        : state;
  }
}

export function isBusy(state: UploadState): boolean {
  return state.phase === "uploading" || state.phase === "validating";
}

/** Whole percent for the progress bar. */
export function uploadPercent(state: UploadState): number {
  if (state.phase !== "uploading") return state.phase === "idle" || state.phase === "error" ? 0 : 100;
  return state.total > 0 ? Math.floor((state.loaded * 100) / state.total) : 0;
}

/** Which files to send: a folder's two files (README etc. dropped) or one archive. */
export function pickAdapterFiles(files: File[]): { files: File[] } | { error: string } {
  const archives = files.filter((f) => /\.(zip|tar\.gz|tgz|tar)$/i.test(f.name));
  if (archives.length === 1 && files.length === 1) return { files: archives };
  if (archives.length > 0) return { error: "Choose one archive on its own, or the adapter's two files." };
  const wanted = files.filter((f) => f.name === "adapter_config.json" || f.name === "adapter_model.safetensors");
  const names = new Set(wanted.map((f) => f.name));
  if (names.size !== 2 || wanted.length !== 2) {
    return { error: "Choose adapter_config.json and adapter_model.safetensors (or one .zip / .tar.gz)." };
  }
  return { files: wanted };
}
