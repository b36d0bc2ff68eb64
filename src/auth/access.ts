// Who is calling, and may they: authentication from the credential (bearer
// token or client certificate), the role each RPC needs, and the checks a
// handler makes on identity fields, scope and claim holding. Identity is
// never taken from a request field when authentication is on.
import { type HandlerContext, type Interceptor, createContextKey } from "@connectrpc/connect";
import { ActionQueueService } from "../../gen/actionq/v1/action_queue_service_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ActionqError } from "../errors.js";
import { type NodeRequest, kNodeRequest, peerCertificate, remoteAddress } from "../transport/peer.js";
import type { Principal, PrincipalsHolder, Role } from "./principals.js";

export interface Caller {
  /** The authenticated principal; null when authentication is off. */
  principal: Principal | null;
  /** Whom per-principal limits count against: the principal, or without
   * authentication the client's address. */
  limitKey: string;
}

export const kCaller = createContextKey<Caller>({ principal: null, limitKey: "unknown" }, { description: "actionq caller" });

type Method = keyof typeof ActionQueueService.method;

/** The roles that may call each RPC (admin may call all). Some depend on
 * the request: rejecting a claimed action is the worker's, rejecting a
 * pending one the approver's. */
const METHOD_ROLES: Record<Method, readonly Role[] | ((message: Record<string, unknown>) => readonly Role[])> = {
  enqueueAction: ["producer"],
  enqueueActions: ["producer"],
  rollbackAction: ["producer", "operator"],
  // Keeping the other system's approvals (trust_approvals) also needs the
  // operator role: checked in the handler.
  importActions: ["producer"],
  claimAction: ["worker"],
  streamClaims: ["worker"],
  ackClaim: ["worker"],
  extendClaim: ["worker"],
  completeAction: ["worker"],
  completeActions: ["worker"],
  failAction: ["worker"],
  rejectAction: (m) => (m.claimToken ? ["worker"] : ["approver"]),
  approveAction: ["approver"],
  emitEvent: (m) => (m.eventType === "action_progress" ? ["worker"] : ["operator"]),
  cancelAction: ["operator"],
  sweepClaims: ["operator"],
  pauseClaims: ["operator"],
  resumeClaims: ["operator"],
  retryAction: ["operator"],
  reloadPolicy: ["operator"],
  breakGlass: ["operator"],
  getAction: ["viewer"],
  listActions: ["viewer"],
  listEvents: ["viewer"],
  watchEvents: ["viewer"],
  getQueueStats: ["viewer"],
  getPolicy: ["viewer"],
  // Schedules enqueue in their owner's name: changing what and when they
  // enqueue is the owner's (checked in the handler); stopping one is also
  // an operator's.
  createSchedule: ["producer"],
  updateSchedule: ["producer"],
  backfillSchedule: ["producer"],
  pauseSchedule: ["producer", "operator"],
  resumeSchedule: ["producer", "operator"],
  deleteSchedule: ["producer", "operator"],
  getSchedule: ["viewer"],
  listSchedules: ["viewer"],
  // Who am I: every principal may ask, whatever its roles.
  getCaller: ["producer", "worker", "approver", "operator", "viewer"],
};

/** Services other than actionq's own: health is open to all, reflection
 * is for viewers. */
const OPEN_SERVICES = new Set([Health.typeName]);
const VIEWER: readonly Role[] = ["viewer"];

function rolesFor(service: string, method: string, message: unknown): readonly Role[] {
  if (service !== ActionQueueService.typeName) return VIEWER;
  const entry = METHOD_ROLES[method as Method];
  if (entry === undefined) return [];
  return typeof entry === "function" ? entry((message ?? {}) as Record<string, unknown>) : entry;
}

function unauthenticated(message: string): ActionqError {
  return new ActionqError("unauthenticated", "UNAUTHENTICATED", message);
}

/** The principal a call's credentials name, or UNAUTHENTICATED. A bearer
 * token and a client certificate may both be given; they must agree. */
function authenticate(auth: PrincipalsHolder, authorization: string | null, raw: NodeRequest | undefined): Principal {
  const principals = auth.current;
  let byToken: Principal | undefined;
  if (authorization !== null) {
    const match = /^Bearer +(\S{1,4096})\s*$/i.exec(authorization);
    if (!match) throw unauthenticated("the authorization header must be `Bearer <token>`");
    byToken = principals.byBearer(match[1]!);
    if (!byToken) throw unauthenticated("the bearer token is not known (revoked, mistyped, or for another server)");
  }
  let byCertificate: Principal | undefined;
  const peer = peerCertificate(raw);
  if (peer) {
    if (!peer.authorized) {
      throw unauthenticated(`the client certificate is not trusted: ${String(peer.authorizationError ?? "not signed by ACTIONQ_TLS_CLIENT_CA")}`);
    }
    byCertificate = principals.byCertificateSubject(peer.certificate.subject);
    if (!byCertificate) {
      throw unauthenticated(`the client certificate subject ${peer.certificate.subject.replaceAll("\n", ",")} is not mapped to any principal`);
    }
  }
  if (byToken && byCertificate && byToken !== byCertificate) {
    throw unauthenticated(`the bearer token (${byToken.name}) and the client certificate (${byCertificate.name}) name different principals`);
  }
  const principal = byToken ?? byCertificate;
  if (!principal) throw unauthenticated("a credential is required: `authorization: Bearer <token>` or a client certificate");
  return principal;
}

/** Authenticates every call but health's and checks the method's roles,
 * before any handler runs. Without principals (auth off) every caller may
 * do everything, and names itself in the request. */
export function authInterceptor(auth: PrincipalsHolder | undefined): Interceptor {
  return (next) => async (req) => {
    const raw = req.contextValues.get(kNodeRequest);
    if (OPEN_SERVICES.has(req.service.typeName)) return next(req);
    if (!auth) {
      req.contextValues.set(kCaller, { principal: null, limitKey: `address:${remoteAddress(raw)}` });
      return next(req);
    }
    const principal = authenticate(auth, req.header.get("authorization"), raw);
    const roles = rolesFor(req.service.typeName, req.method.localName, req.stream ? undefined : req.message);
    if (!principal.roles.has("admin") && !roles.some((role) => principal.roles.has(role))) {
      const method = req.method.name;
      throw new ActionqError(
        "permission_denied",
        "ROLE_REQUIRED",
        `${principal.name} may not call ${method}: it needs the role ${[...roles, "admin"].join(" or ")}`,
        { method, roles: roles.join(","), principal: principal.name },
      );
    }
    req.contextValues.set(kCaller, { principal, limitKey: `principal:${principal.name}` });
    return next(req);
  };
}

/** Whether a schedule's owner may still enqueue this action at a tick:
 * the principal is still in the auth file, still a producer (or admin),
 * and the action is still in its scope. The schedule acts in the owner's
 * name, so a revoked owner's schedules stop enqueuing (their ticks fail
 * with this error) until the owner is back or the schedule changes hands.
 * Without authentication every owner may. */
export function ownerMayEnqueue(auth: PrincipalsHolder | undefined, owner: string, project: string, actionType: string): ActionqError | undefined {
  if (!auth) return undefined;
  const principal = auth.current.byName.get(owner);
  if (!principal) {
    return new ActionqError("permission_denied", "OWNER_UNKNOWN", `the schedule's owner ${owner} is no longer in the auth file`, { principal: owner });
  }
  if (!principal.roles.has("producer") && !principal.roles.has("admin")) {
    return new ActionqError("permission_denied", "ROLE_REQUIRED", `the schedule's owner ${owner} no longer has the role producer`, {
      principal: owner,
      roles: "producer",
    });
  }
  return newActionScopeError(principal, project, actionType);
}

/** What the access checks need from the store. */
export interface AccessLookups {
  scopes(ids: string[]): Promise<Map<string, { project: string; actionType: string; createdBy: string }>>;
  holders(claims: { id: string; token: string }[]): Promise<Map<string, string>>;
}

function outOfScope(principal: Principal, message: string, metadata: Record<string, string> = {}): ActionqError {
  return new ActionqError("permission_denied", "OUT_OF_SCOPE", `${principal.name} ${message}`, { principal: principal.name, ...metadata });
}

/** OUT_OF_SCOPE when the action lies outside a scoped principal's
 * projects or action types. */
function scopeError(principal: Principal, id: string, action: { project: string; actionType: string }): ActionqError | undefined {
  const scope = principal.scope;
  if (!scope) return undefined;
  if ((scope.projects && !scope.projects.has(action.project)) || (scope.actionTypes && !scope.actionTypes.has(action.actionType))) {
    return outOfScope(principal, `may not act on action ${id} (project ${action.project}, type ${action.actionType})`, { action_id: id });
  }
  return undefined;
}

/** OUT_OF_SCOPE when a new action's project or type is outside a scoped
 * principal's scope. */
function newActionScopeError(principal: Principal, project: string, actionType: string): ActionqError | undefined {
  const scope = principal.scope;
  if (!scope) return undefined;
  if (scope.projects && !scope.projects.has(project)) {
    return outOfScope(principal, `may not act on project ${JSON.stringify(project)}`, { field: "project" });
  }
  if (scope.actionTypes && !scope.actionTypes.has(actionType)) {
    return outOfScope(principal, `may not act on action type ${JSON.stringify(actionType)}`, { field: "action_type" });
  }
  return undefined;
}

/** The checks a handler makes for its caller. With authentication off
 * they pass, and identity fields are taken as given. */
export class Access {
  constructor(
    readonly caller: Caller,
    private readonly lookups: AccessLookups,
    /** Checks a self-named identity (used when authentication is off). */
    private readonly named: (field: string, value: string) => string,
  ) {}

  static of(ctx: HandlerContext, lookups: AccessLookups, named: (field: string, value: string) => string): Access {
    return new Access(ctx.values.get(kCaller), lookups, named);
  }

  get principal(): Principal | null {
    return this.caller.principal;
  }

  /** The identity for `field` (created_by, worker, approver, actor): the
   * principal's name; the field may repeat it or be empty. Without
   * authentication, the field as given. */
  identity(field: string, value: string): string {
    const principal = this.caller.principal;
    if (!principal) return this.named(field, value);
    if (value !== "" && value !== principal.name) {
      throw new ActionqError(
        "permission_denied",
        "IDENTITY_MISMATCH",
        `${field} is ${JSON.stringify(value.slice(0, 256))} but the caller is authenticated as ${principal.name}; leave ${field} empty or set it to ${principal.name}`,
        { field, principal: principal.name },
      );
    }
    return principal.name;
  }

  /** Refuses a new action whose project or type is outside the scope. */
  allowNew(project: string, actionType: string): void {
    const principal = this.caller.principal;
    const error = principal && newActionScopeError(principal, project, actionType);
    if (error) throw error;
  }

  /** Refuses calls on existing actions outside the scope. Actions that do
   * not exist are left for the call itself to report. */
  async allowExisting(ids: string[]): Promise<void> {
    const principal = this.caller.principal;
    if (!principal?.scope || ids.length === 0) return;
    for (const [id, action] of await this.lookups.scopes(ids)) {
      const error = scopeError(principal, id, action);
      if (error) throw error;
    }
  }

  /** A filter of projects and action types, narrowed to the scope: empty
   * becomes the scope, a value outside it is refused. */
  narrow(filter: { actionTypes: string[]; projects: string[] }): { actionTypes: string[]; projects: string[] } {
    const principal = this.caller.principal;
    if (!principal?.scope) return filter;
    const within = (field: string, values: string[], allowed: ReadonlySet<string> | null): string[] => {
      if (!allowed) return values;
      if (values.length === 0) return [...allowed];
      const outside = values.find((value) => !allowed.has(value));
      if (outside !== undefined) throw outOfScope(principal, `may not use ${field} ${JSON.stringify(outside)}`, { field });
      return values;
    };
    return {
      actionTypes: within("action_types", filter.actionTypes, principal.scope.actionTypes),
      projects: within("projects", filter.projects, principal.scope.projects),
    };
  }

  /** Calls that reach across every project and type are for principals
   * without a scope. */
  requireUnscoped(what: string): void {
    const principal = this.caller.principal;
    if (principal?.scope) throw outOfScope(principal, `is limited to some projects or action types and so may not ${what}`);
  }

  /** A pause on an action type reaches every project, and one on a
   * project every type: a scoped principal may only set those that stay
   * inside its scope. Pausing everything needs an unscoped principal. */
  allowPause(kind: string, value: string): void {
    const principal = this.caller.principal;
    const scope = principal?.scope;
    if (!scope) return;
    if (kind === "action_type" && scope.projects === null && scope.actionTypes?.has(value)) return;
    if (kind === "project" && scope.actionTypes === null && scope.projects?.has(value)) return;
    throw outOfScope(principal!, `may not pause or resume ${kind}${value === "" ? "" : ` ${value}`}: it reaches beyond its scope`, { field: "scope" });
  }

  /** For each claim, an error when another principal holds it; claims held
   * by the caller, or whose token is not current, pass (the call itself
   * then answers as it would). */
  async holderErrors(claims: { id: string; token: string }[]): Promise<(ActionqError | undefined)[]> {
    const principal = this.caller.principal;
    if (!principal || claims.length === 0) return claims.map(() => undefined);
    const holders = await this.lookups.holders(claims);
    return claims.map(({ id }) => {
      const holder = holders.get(id);
      if (holder === undefined || holder === principal.name) return undefined;
      return new ActionqError(
        "permission_denied",
        "NOT_CLAIM_HOLDER",
        `action ${id} is claimed by ${holder}, not by ${principal.name}; only the holder of a claim may act on it`,
        {
          action_id: id,
          principal: principal.name,
        },
      );
    });
  }

  /** Superseding cancels the old action: it must be in scope, and only its
   * own producer may. One error (or none) per id, from one lookup. */
  async supersedeErrors(ids: string[]): Promise<(ActionqError | undefined)[]> {
    const principal = this.caller.principal;
    if (!principal || ids.length === 0) return ids.map(() => undefined);
    const found = await this.lookups.scopes(ids);
    return ids.map((id) => {
      const old = found.get(id);
      if (!old) return undefined;
      const outside = scopeError(principal, id, old);
      if (outside || old.createdBy === principal.name) return outside;
      return new ActionqError(
        "permission_denied",
        "NOT_YOUR_ACTION",
        `supersedes_id: action ${id} was proposed by ${old.createdBy}; only its producer may supersede it`,
        {
          field: "supersedes_id",
          action_id: id,
        },
      );
    });
  }

  /** A schedule enqueues in its owner's name: only the owner (or an
   * admin) may change what it enqueues; `operatorMay` lets an operator
   * stop or start it too. Without authentication anyone may. */
  allowScheduleChange(scheduleId: string, owner: string, operatorMay: boolean): void {
    const principal = this.caller.principal;
    if (!principal || principal.name === owner || principal.roles.has("admin")) return;
    if (operatorMay && principal.roles.has("operator")) return;
    throw new ActionqError(
      "permission_denied",
      "NOT_SCHEDULE_OWNER",
      `schedule ${scheduleId} belongs to ${owner}; only its owner${operatorMay ? ", an operator" : ""} or an admin may do this`,
      { schedule_id: scheduleId, owner, principal: principal.name },
    );
  }

  /** Keeping approvals given in another system (ImportActions'
   * trust_approvals): the caller vouches for them, as an operator would.
   * Without authentication anyone may. */
  allowTrustedApprovals(): void {
    const principal = this.caller.principal;
    if (!principal || principal.roles.has("operator") || principal.roles.has("admin")) return;
    throw new ActionqError(
      "permission_denied",
      "TRUST_NEEDS_OPERATOR",
      `${principal.name} may not set trust_approvals: keeping another system's approvals needs the role operator or admin`,
      { field: "trust_approvals", principal: principal.name, roles: "operator,admin" },
    );
  }

  async requireHolder(id: string, token: string): Promise<void> {
    const [error] = await this.holderErrors([{ id, token }]);
    if (error) throw error;
  }
}
