import {
  AccessDeniedError,
  AgentError,
  AgentLimitError,
  BodyTooLargeError,
  CancelledError,
  ClientClosedError,
  KeyMismatchError,
  LineDeadError,
  NameNotFoundError,
  OutcomeUnknownError,
  PerilinkError,
  RemoteError,
  RequestRefusedError,
  ServerBusyError,
  ServerChangedError,
  SessionClosedError,
  SocketLimitError,
  TimeoutError,
  UnreachableError,
  isErrorCode,
} from "../errors.ts";

type ByMessage = new (message: string) => PerilinkError;

/** The classes an application catches by `instanceof`, made again from the code the agent sent. */
const BY_CODE = new Map<string, ByMessage>(Object.entries({
  PERILINK_ACCESS_DENIED: AccessDeniedError,
  PERILINK_AGENT: AgentError,
  PERILINK_AGENT_LIMIT: AgentLimitError,
  PERILINK_CANCELLED: CancelledError,
  PERILINK_CLIENT_CLOSED: ClientClosedError,
  PERILINK_LINE_DEAD: LineDeadError,
  PERILINK_OUTCOME_UNKNOWN: OutcomeUnknownError,
  PERILINK_REQUEST_REFUSED: RequestRefusedError,
  PERILINK_SERVER_BUSY: ServerBusyError,
  PERILINK_SESSION_CLOSED: SessionClosedError,
  PERILINK_SOCKET_LIMIT: SocketLimitError,
  PERILINK_UNREACHABLE: UnreachableError,
}));

/**
 * An error the agent sent (`{code, name, message, wireCode}`) as the
 * application would have had it in-process: the same class for the codes
 * applications match on, else a PerilinkError with the same code and name.
 */
export function reviveError(h: Record<string, unknown>): Error {
  const code = typeof h.code === "string" ? h.code : "PERILINK_AGENT";
  const message = typeof h.message === "string" ? h.message : "the agent gave no reason";
  let err: PerilinkError;
  const cls = BY_CODE.get(code);
  if (cls) err = new cls(message);
  else if (code === "PERILINK_NAME_NOT_FOUND") err = new NameNotFoundError(typeof h.hostname === "string" ? h.hostname : "", message);
  else if (code === "PERILINK_KEY_MISMATCH") err = new KeyMismatchError(typeof h.serverId === "string" ? h.serverId : "", message);
  else if (code === "PERILINK_PROBE_TIMEOUT" || code === "PERILINK_HANDSHAKE_TIMEOUT" || code === "PERILINK_REQUEST_TIMEOUT") err = new TimeoutError(code, message);
  else if (code === "PERILINK_BODY_TOO_LARGE") {
    err = new BodyTooLargeError(typeof h.limit === "number" ? h.limit : 0, "a body");
    err.message = message;
  } else if (code === "PERILINK_SERVER_CHANGED") {
    const side = (v: unknown): { serverId: string; keyFingerprint: string } => ({ serverId: String((v as { serverId?: unknown })?.serverId ?? ""), keyFingerprint: String((v as { keyFingerprint?: unknown })?.keyFingerprint ?? "") });
    err = new ServerChangedError(String(h.host ?? ""), typeof h.port === "number" ? h.port : 0, side(h.expected), side(h.found), message);
  } else if (/^PERILINK_REMOTE_/.test(code) && isErrorCode(code)) err = new RemoteError(code, typeof h.wireCode === "number" ? h.wireCode : 0, message);
  else err = new PerilinkError(isErrorCode(code) ? code : "PERILINK_AGENT", message);
  if (typeof h.name === "string" && /^[A-Za-z]{1,40}$/.test(h.name)) err.name = h.name;
  return err;
}

/** An error as it crosses the agent's socket: the application's side makes the same class again (agent_errors.ts). */
export function wireError(err: unknown): Record<string, unknown> {
  const e = err as { code?: unknown; name?: unknown; message?: unknown; wireCode?: unknown; hostname?: unknown; serverId?: unknown; limit?: unknown; host?: unknown; port?: unknown; expected?: unknown; found?: unknown };
  return {
    code: typeof e?.code === "string" ? e.code : "PERILINK_AGENT",
    name: typeof e?.name === "string" ? e.name : "Error",
    message: typeof e?.message === "string" ? e.message : String(err),
    ...(typeof e?.wireCode === "number" ? { wireCode: e.wireCode } : {}),
    ...(typeof e?.hostname === "string" ? { hostname: e.hostname } : {}),
    ...(typeof e?.serverId === "string" ? { serverId: e.serverId } : {}),
    ...(typeof e?.limit === "number" ? { limit: e.limit } : {}),
    ...(typeof e?.host === "string" && typeof e?.port === "number" ? { host: e.host, port: e.port, expected: e.expected, found: e.found } : {}),
  };
}
