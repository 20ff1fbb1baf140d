// Shapes of the control-plane API (DRF, /api/v1/). tests/browser/test_api_contract.py checks these field names
// and the paths in ./paths.ts against the OpenAPI schema at /api/schema/.

export interface User { id: number; email: string; date_joined: string }
export interface Account {
  id: number; slug: string; name: string; status: string; rpm_limit: number | null; tpm_limit: number | null;
  created_at: string;
}
export interface RateLimit { limit: number; remaining: number | null }
export interface AccountDetail extends Account { rate_limits: { rpm: RateLimit; tpm: RateLimit } }
export interface MyMembership { account: Account; role: string }
export interface Me { user: User; memberships: MyMembership[] }
export interface SignupResult { user: User; account: Account }
export interface LoginResult { user: User; csrf_token: string }
export interface Member { id: number; email: string; role: string; created_at: string }
export interface ApiKey {
  id: number; name: string; masked: string; scopes: ("inference" | "management")[]; created_by: string | null;
  rpm_limit: number | null; tpm_limit: number | null; max_cost_per_request: string | null; created_at: string; last_used_at: string | null; expires_at: string | null; revoked_at: string | null;
  is_active: boolean;
}
export interface ApiKeyCreated extends ApiKey { secret: string }
export interface BaseModel {
  id: number; slug: string; public_name: string; display_name: string; architecture: string; context_length: number;
  kind: "chat" | "embedding";
  price_input_per_mtok: string; price_cached_input_per_mtok: string; price_output_per_mtok: string; created_at: string;
}
export type AdapterStatus = "pending" | "validating" | "ready" | "failed";
export interface Adapter {
  uid: string; name: string; model: string; base_model: string; status: AdapterStatus; failure_reason: string | null;
  rank: number | null; lora_alpha: number | null; use_rslora: boolean; target_modules: string[] | null;
  size_bytes: number | null; created_at: string; updated_at: string;
}
export interface UsageAmounts {
  num_requests: number; prompt_tokens: number; cached_prompt_tokens: number; completion_tokens: number;
  cost_usd: string;
}
export type UsageRow = UsageAmounts & { day?: string; model?: string; model_id?: number; api_key_id?: number };
export interface Usage {
  object: "usage"; start: string; end: string; group_by: "day" | "model" | "key" | "model_day"; data: UsageRow[];
  total: UsageAmounts;
}
export interface Billing {
  mode: "ledger_only" | "stripe"; monthly_spend_limit_usd: string; credit_balance_usd: string;
  payment_status: string; has_payment_method: boolean; month_to_date_usd: string;
}
export interface CreditsResult { payment_intent_id: string; status: string; credit_balance_usd: string }
export interface DashboardConfig {
  gateway_url: string; card_form: "elements" | "test" | "none"; stripe_publishable_key: string;
}
export interface SpendLimit {
  monthly_spend_limit_usd: string; month_to_date_usd: string; credit_balance_usd: string;
  warning: "approaching" | "exceeded" | null;
}
export interface PaymentMethod {
  id: string; brand: string | null; last4: string | null; exp_month: number | null; exp_year: number | null;
  is_default: boolean;
}
export interface InvoiceLine {
  kind: "usage" | "credits"; amount_usd: string; model?: string; prompt_tokens?: number;
  cached_prompt_tokens?: number; completion_tokens?: number;
}
export interface Invoice { id: number; period: string; status: string; amount_usd: string; created_at: string; lines: InvoiceLine[] }
export interface ListOf<T> { object: "list"; data: T[] }
export interface SetupIntent { id: string; client_secret: string }
export interface PlaygroundToken { id: number; name: string; secret: string; expires_at: string; gateway_url: string }
export interface RouteVariant { id: number; model: string; weight: number; share: number; ready: boolean }
export interface Route { id: number; name: string; model: string; variants: RouteVariant[]; created_at: string; updated_at: string }
export interface VariantStats {
  variant_id: number | null; model: string; num_requests: number; prompt_tokens: number; cached_prompt_tokens: number;
  completion_tokens: number; cost_usd: string; ttft_ms_p50: number | null; ttft_ms_p99: number | null;
  latency_ms_p50: number | null; latency_ms_p99: number | null; error_rate: number;
}
export interface RouteStats {
  object: "route.stats"; route: string; start: string; end: string; data: VariantStats[];
  total: { num_requests: number; prompt_tokens: number; completion_tokens: number; cost_usd: string };
}
