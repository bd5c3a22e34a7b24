import type { EventEmitter } from "node:events";
import type { BodySource } from "../protocol/outgoing_body.ts";
import type { LinkRequestOptions } from "./link.ts";
import type { LinkState } from "./link_lifecycle.ts";
import type { ResponseBody } from "./request_table.ts";

/**
 * What an application holds: a link to a server, whether the session table
 * is in this process (`Link`) or in the host agent (agent_link.ts). Events:
 * `message`, `statechange`, `moved`, `close` (link.ts says what each means).
 */
export interface LinkApi extends EventEmitter {
  readonly managementNumber: number;
  readonly app: string;
  readonly requestedHost: string;
  readonly requestedPort: number;
  readonly state: LinkState;
  readonly sessionNumber: number | null;
  readonly closed: boolean;
  request(payload: BodySource, options?: LinkRequestOptions): Promise<Buffer>;
  stream(payload: BodySource, options?: LinkRequestOptions): Promise<ResponseBody>;
  send(payload: Uint8Array | string): Promise<void>;
  close(): void;
}
