import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// Built assets are served by the control plane as static files under /static/app/ (platform/webapp);
// index.html itself is served by Django for every client-side route.
export default defineConfig({
  plugins: [react()],
  base: "/static/",
  build: { outDir: "dist", assetsDir: "app", emptyOutDir: true },
  server: { proxy: { "/api": "http://127.0.0.1:8000" } },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
