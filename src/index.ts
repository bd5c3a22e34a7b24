/** perilink's public API. */
export * from "./errors.ts";
export { PerilinkServer, type ServerStatus } from "./server/server.ts";
export { startServer, type StartServerOptions } from "./server/start_server.ts";
export type { SessionApp, RawApp, RequestContext, ChannelContext, RequestBody, AppResult } from "./server/app.ts";
export type { ServerLimits } from "./server/limits.ts";
export type { ServerConfigInput } from "./server/config.ts";
export { ClientSession, ClientChannel, type ClientSessionOptions, type RequestOptions } from "./client/client_session.ts";
export { identifyUdp, identifyTcp, type Identification } from "./client/identify.ts";
export { createLogger, type Logger } from "./logger.ts";
export { TARGET, type Target } from "./target.ts";
export { VERSION } from "./version.ts";
export { createClient, PerilinkClient, type ClientOptions, type ConnectOptions, type SessionRow } from "./client/client.ts";
export { Link, type LinkRequestOptions, type LinkState, type LinkMove, type LinkPlace, type MoveReason } from "./client/link.ts";
export { loadOrCreateClientKey, processClientKey, type ClientKey } from "./client/client_key.ts";
export type { BodySource, StreamSource } from "./protocol/outgoing_body.ts";
export type { ResponseBody } from "./client/request_table.ts";
