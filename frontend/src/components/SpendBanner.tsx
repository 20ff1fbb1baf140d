import { NavLink, useLocation } from "react-router-dom";
import { useEffect } from "react";

import { PATHS } from "../api/paths";
import type { SpendLimit } from "../api/types";
import { formatUsd } from "../lib/money";
import { useApi } from "./ui";

/** Pages that change the limit, credits or cards say so, and the banner re-checks at once. */
export const BILLING_CHANGED = "hearth:billing-changed";

export function billingChanged(): void {
  window.dispatchEvent(new Event(BILLING_CHANGED));
}

/** In-app warning at 80 % and 100 % of the monthly spend limit (no e-mail); re-checked on every page change and
 *  whenever billing changes. */
export function SpendBanner() {
  const state = useApi<SpendLimit>(PATHS.spendLimit);
  const location = useLocation();
  const { reload } = state;
  useEffect(() => reload(), [location.pathname, reload]);
  useEffect(() => {
    window.addEventListener(BILLING_CHANGED, reload);
    return () => window.removeEventListener(BILLING_CHANGED, reload);
  }, [reload]);
  const s = state.data;
  if (!s?.warning) return null;
  const exceeded = s.warning === "exceeded";
  return (
    <div className={`banner ${exceeded ? "banner-danger" : "banner-warn"}`} role={exceeded ? "alert" : "status"}
      data-testid="spend-banner">
      {exceeded
        ? `This month's spend (${formatUsd(s.month_to_date_usd)}) has reached your limit of ${formatUsd(s.monthly_spend_limit_usd)}: requests are refused once credits run out.`
        : `This month's spend (${formatUsd(s.month_to_date_usd)}) is over 80 % of your limit of ${formatUsd(s.monthly_spend_limit_usd)}.`}{" "}
      <NavLink to="/billing">Raise the limit</NavLink>
    </div>
  );
}
