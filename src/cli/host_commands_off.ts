import { ConfigError } from "../errors.ts";
import { TARGET } from "../target.ts";

/**
 * The host commands in a device build (a target with `"role": "device"`;
 * build/build.ts puts this file in place of call_command.ts,
 * forget_command.ts, pair_host.ts, key_command.ts, browse_command.ts,
 * agent_command.ts, sessions_command.ts, host_usage.ts and id_tcp.ts). A peripheral serves: the session table, the name
 * sources, the line review, the known-servers record, the browser and the
 * host agent are the hosts' side, so they stay in the host builds and the
 * library, out of the device bundle's size budget. What a device's operator
 * needs stays: serve, status, metrics, upgrade, trust, the device's half of
 * pair, and id over UDP.
 */
function notHere(what: string): never {
  throw new ConfigError(
    `Cannot run "perilink ${what}": the ${TARGET.name} build serves devices and has no client; run it from a host build ` +
      `(PERILINK_TARGET=node20 perilink ${what} with the npm package, or the node20 bundle)`,
  );
}

export async function runCall(_args: string[]): Promise<number> {
  return notHere("call");
}

export async function runKey(_args: string[]): Promise<number> {
  return notHere("key");
}

export async function identifyTcp(_host: string, _port: number, _options: unknown): Promise<never> {
  return notHere("id --tcp");
}

export async function runForget(_args: string[]): Promise<number> {
  return notHere("forget");
}

export async function pairWithDevice(_where: string, _code: string, _stateDir: string, _options: unknown): Promise<number> {
  return notHere("pair HOST:PORT CODE");
}

export async function runBrowse(_args: string[]): Promise<number> {
  return notHere("browse");
}

export async function runAgent(_args: string[]): Promise<number> {
  return notHere("agent");
}

export async function runSessions(_args: string[]): Promise<number> {
  return notHere("sessions");
}

/** `perilink help` in a device build: no host command lines, a note on where they are. */
export const HOST_USAGE = "";
export const ID_TCP = "";
export const BUILD_NOTE = `This build (${TARGET.name}) serves devices; the host commands (call, id --tcp, pair HOST:PORT
CODE, key, browse, forget, agent, sessions) are in the host builds (PERILINK_TARGET=node20).

`;
