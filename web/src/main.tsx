import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./app.js";
import { IdentityGate } from "./identity.js";
import "./styles.css";

const queryClient = new QueryClient({
  defaultOptions: {
    // The live event stream refreshes what changes; polling is only a
    // backstop for a stream that is reconnecting.
    queries: { staleTime: 5_000, refetchInterval: 30_000, retry: 1, refetchOnWindowFocus: true },
  },
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <IdentityGate>
        <App />
      </IdentityGate>
    </QueryClientProvider>
  </StrictMode>,
);
