/**
 * `perilink id --tcp`: the identity a session handshake proves
 * (client/identify.ts). The handshake's client half is a host's: a device
 * build has host_commands_off.ts in this file's place and probes over UDP,
 * the seed's way.
 */
export { identifyTcp } from "../client/identify.ts";
