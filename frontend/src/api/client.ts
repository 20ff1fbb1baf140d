// fetch for the control plane: same-origin session cookie, Django's CSRF token from its cookie on unsafe methods,
// and DRF's error bodies ({"field": ["msg"]} or {"detail": "msg"}) turned into one typed error.

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly fieldErrors: Record<string, string[]> = {},
  ) {
    super(message);
  }
}

export function csrfToken(): string {
  const match = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
  return match?.[1] ? decodeURIComponent(match[1]) : "";
}

/** DRF's error body as field errors plus one sentence for the page. */
export function parseErrorBody(status: number, body: unknown): ApiError {
  const fieldErrors: Record<string, string[]> = {};
  let message = `Request failed (${status}).`;
  if (body && typeof body === "object") {
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      const messages = Array.isArray(value) ? value.map(String) : typeof value === "string" ? [value] : [];
      if (key === "detail" || key === "non_field_errors") message = messages.join(" ") || message;
      else if (messages.length) fieldErrors[key] = messages;
    }
    if (message.startsWith("Request failed") && Object.keys(fieldErrors).length) message = "Please fix the fields below.";
  }
  return new ApiError(message, status, fieldErrors);
}

export async function api<T>(path: string, init: { method?: string; json?: unknown } = {}): Promise<T> {
  const method = init.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (init.json !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: init.json === undefined ? undefined : JSON.stringify(init.json),
    });
  } catch {
    throw new ApiError("Can't reach the Hearth API. Check your connection and try again.", 0);
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!response.ok) throw parseErrorBody(response.status, body);
  return body as T;
}

/** Whatever a request threw, as the one error type the pages show. */
export function asApiError(e: unknown): ApiError {
  return e instanceof ApiError ? e : new ApiError(e instanceof Error ? e.message : String(e), 0);
}

export function isAuthError(error: unknown): boolean {
  return error instanceof ApiError && (error.status === 401 || error.status === 403) && /credentials|authenticat/i.test(error.message);
}
