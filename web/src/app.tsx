// The console's frame: a header with the navigation, who is signed in and
// whether the live event stream is connected; a banner while claims are
// paused; and the page for the route.
import { useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { Link, Redirect, Route, Switch, useLocation } from "wouter";
import { PauseKind } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { can, scoped, useMe } from "./identity.js";
import { liveEvents, refreshOnEvents, useLiveStatus, usePauses } from "./live.js";
import { ActionPage } from "./pages/action.js";
import { ActionsPage } from "./pages/actions.js";
import { EventsPage } from "./pages/events.js";
import { InboxPage } from "./pages/inbox.js";
import { OverviewPage } from "./pages/overview.js";
import { PolicyPage } from "./pages/policy.js";
import { SchedulePage } from "./pages/schedule.js";
import { SchedulesPage } from "./pages/schedules.js";

const NAV = [
  { href: "/inbox", label: "Inbox" },
  { href: "/actions", label: "Actions" },
  { href: "/schedules", label: "Schedules" },
  { href: "/overview", label: "Overview" },
  { href: "/events", label: "Events" },
  { href: "/policy", label: "Policy" },
] as const;

/** A path segment as typed; a malformed escape is kept as it is. */
function decoded(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

export function App() {
  const me = useMe();
  const queryClient = useQueryClient();
  const [location] = useLocation();

  useEffect(() => {
    liveEvents.start();
    const stop = refreshOnEvents(queryClient);
    return () => {
      stop();
      liveEvents.stop();
    };
  }, [queryClient]);

  // Each page names itself in the document title.
  useEffect(() => {
    const action = /^\/actions\/([^/]+)/.exec(location);
    const schedule = /^\/schedules\/([^/]+)/.exec(location);
    const page = NAV.find((item) => location.startsWith(item.href));
    document.title = action
      ? `Action #${action[1]} · actionq`
      : schedule
        ? `Schedule ${decoded(schedule[1]!)} · actionq`
        : page
          ? `${page.label} · actionq`
          : "actionq";
  }, [location]);

  const landing = can(me, "approver") ? "/inbox" : "/overview";
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">actionq</span>
        <nav aria-label="Console">
          <ul>
            {NAV.map((item) => (
              <li key={item.href}>
                <Link href={item.href} aria-current={location.startsWith(item.href) ? "page" : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <LiveIndicator />
        <div className="whoami">
          <span title={me.auth ? `roles: ${[...me.roles].join(", ")}` : "authentication is off on this server"}>
            {me.name}
            {me.auth ? <span className="muted"> ({[...me.roles].join(", ")})</span> : <span className="muted"> (no authentication)</span>}
          </span>
          <button type="button" className="link" onClick={me.signOut}>
            Sign out
          </button>
        </div>
      </header>
      {can(me, "viewer") && !scoped(me) && <PauseBanner />}
      <main id="main" tabIndex={-1}>
        <Switch>
          <Route path="/">
            <Redirect to={landing} replace />
          </Route>
          <Route path="/inbox" component={InboxPage} />
          <Route path="/actions" component={ActionsPage} />
          <Route path="/actions/:id">{(params) => <ActionPage id={params.id} />}</Route>
          <Route path="/schedules" component={SchedulesPage} />
          <Route path="/schedules/:id">{(params) => <SchedulePage key={params.id} id={decoded(params.id)} />}</Route>
          <Route path="/overview" component={OverviewPage} />
          <Route path="/events" component={EventsPage} />
          <Route path="/policy" component={PolicyPage} />
          <Route>
            <h1>Not found</h1>
            <p>
              The console has no page at {location}. <Link href={landing}>Go to the start page</Link>.
            </p>
          </Route>
        </Switch>
      </main>
    </>
  );
}

function LiveIndicator() {
  const status = useLiveStatus();
  const text = status.state === "live" ? "Live" : status.state === "connecting" ? "Connecting…" : "Reconnecting…";
  return (
    <span className={`live live-${status.state}`} role="status" title={status.state === "reconnecting" ? status.error : "following the event log"}>
      {text}
    </span>
  );
}

/** Every page says so while claims, or auto-approval, are paused. */
function PauseBanner() {
  const pauses = usePauses().data ?? [];
  if (pauses.length === 0) return null;
  const all = pauses.find((p) => p.scope?.kind === PauseKind.ALL);
  return (
    <div className="pause-banner" role="status" aria-live="polite">
      <strong>{all ? "All claims are paused" : `${pauses.length} pause${pauses.length === 1 ? "" : "s"} in force`}</strong>
      {all && (
        <span>
          {" "}
          by {all.pausedBy}: “{all.reason}”
        </span>
      )}{" "}
      <Link href="/overview">See the kill switch</Link>
    </div>
  );
}
