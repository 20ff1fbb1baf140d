import { type FormEvent, useEffect, useRef, useState } from "react";

import { api, ApiError, asApiError } from "../api/client";
import { PATHS } from "../api/paths";
import type { DashboardConfig, SetupIntent } from "../api/types";
import { ErrorText, Field } from "./ui";

// Stripe.js, loaded only where the installation runs against real Stripe (config.card_form === "elements").
interface StripeCardElement { mount: (el: HTMLElement) => void; destroy: () => void }
interface StripeJs {
  elements: () => { create: (kind: "card") => StripeCardElement };
  confirmCardSetup: (secret: string, data: { payment_method: { card: StripeCardElement } }) =>
    Promise<{ error?: { message?: string } }>;
}
declare global {
  interface Window { Stripe?: (key: string) => StripeJs }
}

function loadStripeJs(): Promise<void> {
  if (window.Stripe) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "https://js.stripe.com/v3/";
    script.onload = () => resolve();
    script.onerror = () => reject(new Error("Stripe.js could not be loaded."));
    document.head.appendChild(script);
  });
}


/** Adds a card through a SetupIntent: Stripe Elements against Stripe, or the test-mode form (card data confirmed
 *  through our API) against a Stripe stand-in such as localstripe in development and tests. */
export function CardForm({ config, onAdded }: { config: DashboardConfig; onAdded: () => void }) {
  const [error, setError] = useState<ApiError>();
  const [busy, setBusy] = useState(false);
  const [number, setNumber] = useState("");
  const [expiry, setExpiry] = useState("12/34");
  const [cvc, setCvc] = useState("");
  const mountRef = useRef<HTMLDivElement>(null);
  const stripeRef = useRef<{ stripe: StripeJs; card: StripeCardElement } | undefined>(undefined);

  useEffect(() => {
    if (config.card_form !== "elements" || !mountRef.current) return;
    let card: StripeCardElement | undefined;
    loadStripeJs().then(() => {
      const stripe = window.Stripe!(config.stripe_publishable_key);
      card = stripe.elements().create("card");
      card.mount(mountRef.current!);
      stripeRef.current = { stripe, card };
    }, (e) => setError(asApiError(e)));
    return () => card?.destroy();
  }, [config]);

  if (config.card_form === "none") return null;
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    setBusy(true);
    try {
      const intent = await api<SetupIntent>(PATHS.setupIntent, { method: "POST" });
      if (config.card_form === "test") {
        const [month, year] = expiry.split("/").map((p) => Number.parseInt(p.trim(), 10));
        await api(PATHS.testCard, { method: "POST", json: {
          setup_intent_id: intent.id, number: number.replace(/\s+/g, ""), exp_month: month,
          exp_year: year !== undefined && year < 100 ? 2000 + year : year, cvc } });
      } else {
        const s = stripeRef.current;
        if (!s) throw new ApiError("The card form is still loading.", 0);
        const result = await s.stripe.confirmCardSetup(intent.client_secret, { payment_method: { card: s.card } });
        if (result.error) throw new ApiError(result.error.message ?? "The card was declined.", 402);
        await api(PATHS.paymentMethod, { method: "POST", json: { setup_intent_id: intent.id } });
      }
      setNumber("");
      setCvc("");
      onAdded();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="inline-form" onSubmit={submit} aria-label="Add a card">
      {config.card_form === "test" ? (
        <>
          <Field label="Card number" errors={error?.fieldErrors.number} hint="Test mode: e.g. 4242 4242 4242 4242.">
            {({ id, describedBy, invalid }) => (
              <input id={id} inputMode="numeric" autoComplete="off" value={number} aria-invalid={invalid}
                aria-describedby={describedBy} onChange={(e) => setNumber(e.target.value)} required />
            )}
          </Field>
          <Field label="Expiry (MM/YY)" errors={error?.fieldErrors.exp_month ?? error?.fieldErrors.exp_year}>
            {({ id, describedBy, invalid }) => (
              <input id={id} value={expiry} aria-invalid={invalid} aria-describedby={describedBy} size={6}
                onChange={(e) => setExpiry(e.target.value)} required />
            )}
          </Field>
          <Field label="CVC" errors={error?.fieldErrors.cvc}>
            {({ id, describedBy, invalid }) => (
              <input id={id} inputMode="numeric" autoComplete="off" value={cvc} aria-invalid={invalid} size={4}
                aria-describedby={describedBy} onChange={(e) => setCvc(e.target.value)} required />
            )}
          </Field>
        </>
      ) : (
        <div className="field"><label>Card</label><div ref={mountRef} className="stripe-card" /></div>
      )}
      <button type="submit" className="primary" disabled={busy}>{busy ? "Adding…" : "Add card"}</button>
      {error && !Object.keys(error.fieldErrors).length && <ErrorText error={error} />}
    </form>
  );
}
