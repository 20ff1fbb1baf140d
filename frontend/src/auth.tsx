import { createContext, type ReactNode, useCallback, useContext, useEffect, useState } from "react";

import { api, ApiError, asApiError } from "./api/client";
import { PATHS } from "./api/paths";
import type { Me } from "./api/types";

interface AuthState {
  me: Me | null | undefined; // undefined: still asking; null: not logged in
  error: ApiError | undefined;
  refresh: () => Promise<void>;
  logout: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [error, setError] = useState<ApiError>();
  const refresh = useCallback(async () => {
    try {
      setMe(await api<Me>(PATHS.me));
      setError(undefined);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) setMe(null);
      else setError(asApiError(e));
    }
  }, []);
  const logout = useCallback(async () => {
    await api(PATHS.logout, { method: "POST" });
    setMe(null);
  }, []);
  useEffect(() => {
    // The SPA page sets the CSRF cookie; ask once more in case it was served from a cache.
    api(PATHS.csrf).catch(() => undefined).finally(() => void refresh());
  }, [refresh]);
  return <AuthContext.Provider value={{ me, error, refresh, logout }}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error("useAuth outside AuthProvider");
  return ctx;
}
