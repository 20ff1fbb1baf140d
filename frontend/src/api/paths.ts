// Every control-plane path the dashboard calls, with its methods (checked against the OpenAPI schema).
export const PATHS = {
  csrf: "/api/v1/auth/csrf", // GET
  signup: "/api/v1/auth/signup", // POST
  login: "/api/v1/auth/login", // POST
  logout: "/api/v1/auth/logout", // POST
  me: "/api/v1/me", // GET
  account: "/api/v1/account", // GET PATCH
  members: "/api/v1/account/members", // GET POST
  member: (id: number) => `/api/v1/account/members/${id}`, // PATCH DELETE
  keys: "/api/v1/keys", // GET POST
  keyRevoke: (id: number) => `/api/v1/keys/${id}/revoke`, // POST
  models: "/api/v1/models", // GET
  adapters: "/api/v1/adapters", // GET POST
  adapter: (uid: string) => `/api/v1/adapters/${uid}`, // GET DELETE
  usage: "/api/v1/usage", // GET
  routes: "/api/v1/routes", // GET POST
  route: (id: number) => `/api/v1/routes/${id}`, // GET PATCH DELETE
  routeStats: (id: number) => `/api/v1/routes/${id}/stats`, // GET
  billing: "/api/v1/billing", // GET
  credits: "/api/v1/billing/credits", // POST
  spendLimit: "/api/v1/billing/spend-limit", // GET PUT
  setupIntent: "/api/v1/billing/setup-intent", // POST
  paymentMethod: "/api/v1/billing/payment-method", // POST
  testCard: "/api/v1/billing/test-card", // POST
  paymentMethods: "/api/v1/billing/payment-methods", // GET
  paymentMethodDetail: (id: string) => `/api/v1/billing/payment-methods/${id}`, // DELETE
  invoices: "/api/v1/billing/invoices", // GET
  usageCsv: "/api/v1/usage.csv", // GET
  config: "/api/v1/config", // GET
  playgroundToken: "/api/v1/playground/token", // POST
} as const;
