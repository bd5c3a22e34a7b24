import { AccessDeniedError, PerilinkError, RemoteError, RequestRefusedError, ServerBusyError, type ErrorCode } from "../errors.ts";
import { WireError } from "../protocol/constants.ts";

const REMOTE_CODES: Record<number, ErrorCode> = {
  [WireError.ProtocolError]: "PERILINK_PROTOCOL",
  [WireError.FrameTooLarge]: "PERILINK_FRAME_TOO_LARGE",
  [WireError.UnknownChannel]: "PERILINK_UNKNOWN_CHANNEL",
  [WireError.ApplicationError]: "PERILINK_REMOTE_APP",
  [WireError.Cancelled]: "PERILINK_CANCELLED",
  [WireError.Internal]: "PERILINK_REMOTE_INTERNAL",
  [WireError.Timeout]: "PERILINK_REMOTE_TIMEOUT",
  [WireError.FlowControl]: "PERILINK_FLOW_CONTROL",
};

/** Maps a wire error code from the server to the error class and `code` a caller sees. */
export function errorFromWire(code: number, reason: string): PerilinkError {
  switch (code) {
    case WireError.RefusedStream:
    case WireError.ShuttingDown:
      return new RequestRefusedError(reason);
    case WireError.LimitExceeded:
    case WireError.ServerBusy:
      return new ServerBusyError(reason);
    case WireError.AccessDenied:
      return new AccessDeniedError(reason);
    default:
      return new RemoteError(REMOTE_CODES[code] ?? "PERILINK_REMOTE_ERROR", code, reason);
  }
}
