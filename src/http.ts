/** perilink/http: fetch() and undici through the session table's idea of a server (docs/client.md, "HTTP"). */
export { createDispatcher, PerilinkDispatcher, type DispatcherOptions, type HttpServerRow } from "./http/http_dispatcher.ts";
