import { Navigate, NavLink, Outlet, Route, Routes, useLocation } from "react-router-dom";

import { useAuth } from "./auth";
import { SpendBanner } from "./components/SpendBanner";
import { AccountPage } from "./pages/Account";
import { AdaptersPage } from "./pages/Adapters";
import { LoginPage, SignupPage } from "./pages/Auth";
import { BillingPage } from "./pages/Billing";
import { KeysPage } from "./pages/Keys";
import { ModelsPage } from "./pages/Models";
import { OverviewPage } from "./pages/Overview";
import { PlaygroundPage } from "./pages/Playground";
import { RoutesPage } from "./pages/Routes";
import { UsagePage } from "./pages/Usage";

const NAV = [
  ["/", "Overview"],
  ["/keys", "API keys"],
  ["/models", "Models"],
  ["/playground", "Playground"],
  ["/adapters", "Adapters"],
  ["/routes", "Routes"],
  ["/usage", "Usage"],
  ["/billing", "Billing"],
  ["/account", "Account"],
] as const;

function Shell() {
  const { me, logout } = useAuth();
  const location = useLocation();
  if (me === null) return <Navigate to="/login" replace state={{ from: location.pathname }} />;
  if (me === undefined) return <p className="muted center" role="status">Loading…</p>;
  const account = me.memberships[0]?.account;
  return (
    <div className="shell">
      <a className="skip" href="#main">Skip to content</a>
      <aside className="sidebar">
        <div className="brand">Hearth</div>
        <nav aria-label="Dashboard">
          {NAV.map(([to, label]) => (
            <NavLink key={to} to={to} end={to === "/"}>{label}</NavLink>
          ))}
        </nav>
        <div className="who">
          <span title={me.user.email}>{account?.name ?? me.user.email}</span>
          <button type="button" className="link" onClick={() => void logout()}>Log out</button>
        </div>
      </aside>
      <main id="main" tabIndex={-1}>
        <SpendBanner />
        <Outlet />
      </main>
    </div>
  );
}

export function App() {
  const { error } = useAuth();
  if (error) {
    return (
      <p className="error center" role="alert">
        Can't reach Hearth: {error.message} <button type="button" onClick={() => location.reload()}>Retry</button>
      </p>
    );
  }
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route path="/signup" element={<SignupPage />} />
      <Route element={<Shell />}>
        <Route index element={<OverviewPage />} />
        <Route path="keys" element={<KeysPage />} />
        <Route path="models" element={<ModelsPage />} />
        <Route path="playground" element={<PlaygroundPage />} />
        <Route path="adapters" element={<AdaptersPage />} />
        <Route path="routes" element={<RoutesPage />} />
        <Route path="usage" element={<UsagePage />} />
        <Route path="billing" element={<BillingPage />} />
        <Route path="account" element={<AccountPage />} />
        <Route path="*" element={<p>Page not found. <NavLink to="/">Go to the overview</NavLink>.</p>} />
      </Route>
    </Routes>
  );
}
