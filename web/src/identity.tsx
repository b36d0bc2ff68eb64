// Who is at the keyboard. With authentication on, the person signs in with
// a bearer token and the server's GetCaller says who that is and which
// roles it has; without it (a loopback-only server), the person gives a
// name, which the console writes into `approver` and `actor` as actionctl
// does. Controls a role does not allow are not offered; the server still
// decides every call.
import { type FormEvent, type ReactNode, createContext, useCallback, useContext, useEffect, useState } from "react";
import { Code, api, errorCode, errorText, session } from "./api.js";

export type Role = "producer" | "worker" | "approver" | "operator" | "viewer" | "admin";

export interface Me {
  /** False when the server runs without authentication. */
  auth: boolean;
  /** The principal, or the name the person gave. */
  name: string;
  roles: ReadonlySet<string>;
  /** Empty: every project / action type. */
  projects: readonly string[];
  actionTypes: readonly string[];
  signOut(): void;
}

const MeContext = createContext<Me | null>(null);

export function useMe(): Me {
  const me = useContext(MeContext);
  if (!me) throw new Error("useMe outside <IdentityGate>");
  return me;
}

/** Whether the person may do what `role` allows. Without authentication
 * every caller may do everything. */
export function can(me: Me, role: Role): boolean {
  return !me.auth || me.roles.has("admin") || me.roles.has(role);
}

/** Whether the principal's scope is limited to some projects or types. */
export function scoped(me: Me): boolean {
  return me.projects.length > 0 || me.actionTypes.length > 0;
}

/** The value for an identity field (`approver`, `actor`): empty with
 * authentication (the server fills in the principal), the given name
 * without. */
export function actorField(me: Me): string {
  return me.auth ? "" : me.name;
}

type State =
  | { kind: "loading" }
  | { kind: "failed"; error: string }
  | { kind: "signin"; auth: boolean; error?: string }
  | { kind: "ready"; me: Omit<Me, "signOut"> };

export function IdentityGate({ children }: { children: ReactNode }) {
  const [state, setState] = useState<State>({ kind: "loading" });

  const identify = useCallback(async () => {
    try {
      const caller = await api.getCaller({});
      if (caller.authenticationEnabled) {
        setState({
          kind: "ready",
          me: { auth: true, name: caller.name, roles: new Set(caller.roles), projects: caller.projects, actionTypes: caller.actionTypes },
        });
        return;
      }
      const name = session.name();
      if (name) setState({ kind: "ready", me: { auth: false, name, roles: new Set(), projects: [], actionTypes: [] } });
      else setState({ kind: "signin", auth: false });
    } catch (error) {
      if (errorCode(error) === Code.Unauthenticated) {
        const hadToken = session.token() !== null;
        session.setToken(null);
        setState({ kind: "signin", auth: true, ...(hadToken ? { error: errorText(error) } : {}) });
      } else {
        setState({ kind: "failed", error: errorText(error) });
      }
    }
  }, []);

  useEffect(() => {
    void identify();
  }, [identify]);

  const signOut = useCallback(() => {
    session.clear();
    setState({ kind: "loading" });
    void identify();
  }, [identify]);

  switch (state.kind) {
    case "loading":
      return (
        <main className="signin" aria-busy="true">
          <p>Connecting to actionq…</p>
        </main>
      );
    case "failed":
      return (
        <main className="signin">
          <h1>actionq console</h1>
          <p role="alert" className="error">
            The server did not answer: {state.error}
          </p>
          <button type="button" onClick={() => void identify()}>
            Try again
          </button>
        </main>
      );
    case "signin":
      return (
        <SignIn
          auth={state.auth}
          error={state.error}
          onDone={(value) => {
            if (state.auth) session.setToken(value);
            else session.setName(value);
            void identify();
          }}
        />
      );
    case "ready":
      return <MeContext.Provider value={{ ...state.me, signOut }}>{children}</MeContext.Provider>;
  }
}

function SignIn({ auth, error, onDone }: { auth: boolean; error: string | undefined; onDone: (value: string) => void }) {
  const [value, setValue] = useState("");
  const [problem, setProblem] = useState<string | undefined>(undefined);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const trimmed = value.trim();
    if (trimmed === "") {
      setProblem(auth ? "Enter your bearer token." : "Enter your name.");
      return;
    }
    if (!auth && /\s/.test(trimmed)) {
      setProblem("A name has no spaces; for example human:alice.");
      return;
    }
    onDone(trimmed);
  };
  const shown = problem ?? error;
  return (
    <main className="signin">
      <h1>actionq console</h1>
      <form onSubmit={submit} noValidate>
        {auth ? (
          <>
            <p>
              This server requires authentication. Sign in with the bearer token that `actionq token` printed for you. It is kept for this browser session only.
            </p>
            <label htmlFor="signin-token">Bearer token</label>
            <input
              id="signin-token"
              name="token"
              type="password"
              autoComplete="off"
              spellCheck={false}
              value={value}
              onChange={(e) => setValue(e.target.value)}
              aria-describedby={shown ? "signin-problem" : undefined}
            />
          </>
        ) : (
          <>
            <p>This server runs without authentication. Give the name your approvals and other acts will be recorded under, as with actionctl.</p>
            <label htmlFor="signin-name">Your name</label>
            <input
              id="signin-name"
              name="name"
              type="text"
              autoComplete="username"
              placeholder="human:alice"
              spellCheck={false}
              value={value}
              onChange={(e) => setValue(e.target.value)}
              aria-describedby={shown ? "signin-problem" : undefined}
            />
          </>
        )}
        {shown && (
          <p id="signin-problem" role="alert" className="error">
            {shown}
          </p>
        )}
        <button type="submit">{auth ? "Sign in" : "Continue"}</button>
      </form>
    </main>
  );
}
