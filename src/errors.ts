/**
 * Every error perilink throws on purpose, in one place. Each class carries a stable `code` string that callers
 * can match on; messages read "Cannot <action>: <why>" and say what to do where there is something to do.
 * Bad arguments to an API throw the built-in `TypeError` / `RangeError`.
 */

/** Every `code` a perilink error can carry (docs/errors.md says what each means and what to do). */
export const ERROR_CODES = [
  "PERILINK_ACCESS_DENIED",
  "PERILINK_ADDRESS_IN_USE",
  "PERILINK_ADDRESS_UNAVAILABLE",
  "PERILINK_AGENT",
  "PERILINK_AGENT_LIMIT",
  "PERILINK_APP",
  "PERILINK_APP_NOT_READY",
  "PERILINK_BODY_TOO_LARGE",
  "PERILINK_CANCELLED",
  "PERILINK_CLIENT_CLOSED",
  "PERILINK_CONFIG",
  "PERILINK_CONTROL",
  "PERILINK_FLOW_CONTROL",
  "PERILINK_FRAME_TOO_LARGE",
  "PERILINK_HANDOFF",
  "PERILINK_HANDOFF_TOO_LARGE",
  "PERILINK_HANDSHAKE_TIMEOUT",
  "PERILINK_IDENTITY",
  "PERILINK_KEY_MISMATCH",
  "PERILINK_LINE_DEAD",
  "PERILINK_LISTEN",
  "PERILINK_NAME_NOT_FOUND",
  "PERILINK_OUTCOME_UNKNOWN",
  "PERILINK_PAIRING",
  "PERILINK_PIN_FILE",
  "PERILINK_PROBE_TIMEOUT",
  "PERILINK_PROTOCOL",
  "PERILINK_RECORD",
  "PERILINK_REMOTE_APP",
  "PERILINK_REMOTE_ERROR",
  "PERILINK_REMOTE_INTERNAL",
  "PERILINK_REMOTE_TIMEOUT",
  "PERILINK_REQUEST_REFUSED",
  "PERILINK_REQUEST_TIMEOUT",
  "PERILINK_SEMAPHORE",
  "PERILINK_SEMAPHORE_TIMEOUT",
  "PERILINK_SERVER_BUSY",
  "PERILINK_SERVER_CHANGED",
  "PERILINK_SESSION_CLOSED",
  "PERILINK_SIGNATURE",
  "PERILINK_SOCKET_ACTIVATION",
  "PERILINK_SOCKET_LIMIT",
  "PERILINK_STATE_DIR_UNSAFE",
  "PERILINK_UNKNOWN_CHANNEL",
  "PERILINK_UNREACHABLE",
  "PERILINK_UPGRADE_CANCELLED",
  "PERILINK_UPGRADE_FAILED",
  "PERILINK_UPGRADE_IN_PROGRESS",
  "PERILINK_UPGRADE_UNSUPPORTED",
  "PERILINK_USAGE",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

let knownCodes: ReadonlySet<string> | null = null; // made at the first question: a bundle that never asks has no copy

/** Whether `code` (read from another process, e.g. a control-socket reply) is one of ours. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && (knownCodes ??= new Set(ERROR_CODES)).has(code);
}

/** Whether `code` has the shape of ours, without the list (which the device bundle leaves out): a reason passed on, not matched. */
export const codeShaped = (code: unknown): code is ErrorCode => typeof code === "string" && /^PERILINK_[A-Z_]{1,48}$/.test(code);

/** Base class: every perilink error has a stable `code` (one of `ERROR_CODES` when perilink throws it). */
export class PerilinkError extends Error {
  readonly code: string;
  constructor(code: ErrorCode | (string & {}), message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A configuration file or command-line option is wrong. */
export class ConfigError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_CONFIG", message, options);
  }
}

/** A command line that does not say what to do: an unknown option, a missing or malformed argument (`perilink` exits 2). */
export class UsageError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_USAGE", message, options);
  }
}

/** The identity in the state directory is missing parts, corrupt or unreadable. */
export class IdentityError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_IDENTITY", message, options);
  }
}

/** A listening socket could not be opened (address in use, not available). */
export class ListenError extends PerilinkError {
  readonly address: string;
  readonly port: number;
  constructor(
    code: "PERILINK_ADDRESS_IN_USE" | "PERILINK_ADDRESS_UNAVAILABLE" | "PERILINK_LISTEN",
    address: string,
    port: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.address = address;
    this.port = port;
  }
}

/** The sockets systemd passed (LISTEN_FDS) cannot be used. */
export class SocketActivationError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_SOCKET_ACTIVATION", message);
  }
}

/** The peer broke the wire protocol. `wireCode` is the numeric code sent in (or received from) an ERROR frame; see `WireError` in protocol/constants.ts. */
export class ProtocolError extends PerilinkError {
  readonly wireCode: number;
  constructor(wireCode: number, message: string, code: ErrorCode = "PERILINK_PROTOCOL") {
    super(code, message);
    this.wireCode = wireCode;
  }
}

/** `WireError.ProtocolError` (protocol/constants.ts; this file is below it). */
const WIRE_PROTOCOL_ERROR = 1;

/**
 * A sealed record (protocol v2) failed: it did not authenticate (changed,
 * replayed, reordered, from another session), its length is out of bounds,
 * or the connection ended inside one. The session ends; nothing of the
 * record reaches the application.
 */
export class RecordError extends ProtocolError {
  constructor(message: string) {
    super(WIRE_PROTOCOL_ERROR, message, "PERILINK_RECORD");
  }
}

/** A frame's length prefix exceeds the negotiated maximum. */
export class FrameTooLargeError extends ProtocolError {
  readonly length: number;
  readonly limit: number;
  constructor(wireCode: number, length: number, limit: number) {
    super(
      wireCode,
      `Cannot accept frame: its payload of ${length} bytes exceeds the negotiated limit of ${limit} bytes`,
      "PERILINK_FRAME_TOO_LARGE",
    );
    this.length = length;
    this.limit = limit;
  }
}

/** The server answered, but its signature over our nonce does not verify. */
export class SignatureError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_SIGNATURE", message);
  }
}

/** Nothing answered an identify probe or a handshake in time. */
export class TimeoutError extends PerilinkError {
  constructor(code: "PERILINK_PROBE_TIMEOUT" | "PERILINK_HANDSHAKE_TIMEOUT" | "PERILINK_REQUEST_TIMEOUT", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The server refused a session or channel because one of its limits is reached. */
export class ServerBusyError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_SERVER_BUSY", message);
  }
}

/**
 * The server does not trust this client's key for the app it asked for
 * (server `access: "keys"`, the default). The message names the key's
 * fingerprint and the command, on the device, that trusts it.
 */
export class AccessDeniedError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_ACCESS_DENIED", message);
  }
}

/** Pairing with a device failed: no code is waiting, the code is wrong or expired, or its attempts are used up. */
export class PairingError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_PAIRING", message, options);
  }
}

/** The session ended (closed, reset, or drained) before the operation finished. */
export class SessionClosedError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_SESSION_CLOSED", message, options);
  }
}

/** The server refused a request without starting it (it was draining and the request's stream id was above its GOAWAY mark). Always safe to send again. */
export class RequestRefusedError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_REQUEST_REFUSED", message);
  }
}

/** The server-side application threw or rejected while handling a request. */
export class RemoteError extends PerilinkError {
  readonly wireCode: number;
  constructor(code: ErrorCode, wireCode: number, message: string) {
    super(code, message);
    this.wireCode = wireCode;
  }
}

/** No server answers on the control socket of a state directory. */
export class ControlError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_CONTROL", message, options);
  }
}

/** An application module could not be loaded or has the wrong shape; or (PERILINK_APP_NOT_READY) its `ready()` hook failed or timed out. */
export class AppError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown; code?: "PERILINK_APP" | "PERILINK_APP_NOT_READY" }) {
    super(options?.code ?? "PERILINK_APP", message, options);
  }
}

/** What an app hands to its next generation at an upgrade was refused (docs/apps.md, "Upgrades"). */
export class HandoffError extends PerilinkError {
  constructor(code: "PERILINK_HANDOFF" | "PERILINK_HANDOFF_TOO_LARGE", message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** An upgrade (seamless replacement) was refused, rolled back (the running process keeps serving) or cancelled (it is shutting down). */
export class UpgradeError extends PerilinkError {
  /** Why the new program could not start, when it said so with a code of ours (PERILINK_APP_NOT_READY, PERILINK_CONFIG…). */
  readonly reason: ErrorCode | undefined;
  constructor(code: "PERILINK_UPGRADE_IN_PROGRESS" | "PERILINK_UPGRADE_FAILED" | "PERILINK_UPGRADE_UNSUPPORTED" | "PERILINK_UPGRADE_CANCELLED", message: string, options?: { cause?: unknown; reason?: ErrorCode | undefined }) {
    super(code, message, options);
    this.reason = options?.reason;
  }
}

/** The accept semaphore could not be taken in time, or could not be used at all. */
export class SemaphoreError extends PerilinkError {
  constructor(code: "PERILINK_SEMAPHORE_TIMEOUT" | "PERILINK_SEMAPHORE", message: string) {
    super(code, message);
  }
}

/** The client is at its socket limit and the wait queue is full, or the wait timed out. */
export class SocketLimitError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_SOCKET_LIMIT", message);
  }
}

/** A server answered with a known server identifier but another key than the one pinned for it. */
export class KeyMismatchError extends PerilinkError {
  readonly serverId: string;
  constructor(serverId: string, message: string) {
    super("PERILINK_KEY_MISMATCH", message);
    this.serverId = serverId;
  }
}

/** A name or address leads to another server than before (the known-servers record) or than the key expected: an impostor, or a replaced server. */
export class ServerChangedError extends PerilinkError {
  /** The name or address as the application gave it, and the port. */
  readonly host: string;
  readonly port: number;
  /** The server it led to before (or the key expected); the one it leads to now. */
  readonly expected: { serverId: string | null; keyFingerprint: string };
  readonly found: { serverId: string; keyFingerprint: string };
  constructor(host: string, port: number, expected: ServerChangedError["expected"], found: ServerChangedError["found"], message: string) {
    super("PERILINK_SERVER_CHANGED", message);
    this.host = host;
    this.port = port;
    this.expected = expected;
    this.found = found;
  }
}

/**
 * The session failed while a request was in flight and the request may have
 * been processed; it was not marked idempotent, so it was not sent again.
 */
export class OutcomeUnknownError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_OUTCOME_UNKNOWN", message, options);
  }
}

/**
 * The session's line went silent: with requests outstanding (or on a
 * keepalive) a PING got no answer in time. The session is destroyed and its
 * links move to another address of the server (C5).
 */
export class LineDeadError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_LINE_DEAD", message);
  }
}

/** No address of the server could be reached. */
export class UnreachableError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_UNREACHABLE", message, options);
  }
}

/**
 * The host agent cannot be used: none answers where one is required
 * (`agent: true`), its socket is not this user's, or the connection to it
 * ended while something was in progress.
 */
export class AgentError extends PerilinkError {
  /** The agent let the connection go (after a GOAWAY, with a last `bye`) before it read this: it did not run, and may go to the next agent. */
  readonly unsent: boolean;
  constructor(message: string, options?: { cause?: unknown; unsent?: boolean }) {
    super("PERILINK_AGENT", message, options);
    this.unsent = options?.unsent === true;
  }
}

/** This process reached one of the agent's per-process limits (links, requests in flight, bytes unread). */
export class AgentLimitError extends PerilinkError {
  constructor(message: string) {
    super("PERILINK_AGENT_LIMIT", message);
  }
}

/** The client was closed: a connect that was still in progress, or one made after, fails with it. */
export class ClientClosedError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_CLIENT_CLOSED", message, options);
  }
}

/** The client's file of pinned server keys cannot be read, parsed or written. */
export class PinFileError extends PerilinkError {
  readonly file: string;
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super("PERILINK_PIN_FILE", message, options);
    this.file = file;
  }
}

/**
 * The state directory is not private to this user: owned by another user, or
 * writable by group or others (who could then take the identity key or plant
 * files the server would follow).
 */
export class StateDirError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_STATE_DIR_UNSAFE", message, options);
  }
}

/** No name service that was asked knows the name (or every one of them stayed silent). */
export class NameNotFoundError extends PerilinkError {
  readonly hostname: string;
  constructor(hostname: string, message: string, options?: { cause?: unknown }) {
    super("PERILINK_NAME_NOT_FOUND", message, options);
    this.hostname = hostname;
  }
}

/** A streamed body was larger than the reader asked to hold whole (`bytes()`, or a request without `streams: true`). */
export class BodyTooLargeError extends PerilinkError {
  readonly limit: number;
  constructor(limit: number, what: string) {
    super("PERILINK_BODY_TOO_LARGE", `Cannot take ${what} whole: it is larger than ${limit} bytes; read it as a stream instead`);
    this.limit = limit;
  }
}

/** A streamed body ended before its end: the other side cancelled it, or its session ended. */
export class CancelledError extends PerilinkError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("PERILINK_CANCELLED", message, options);
  }
}
