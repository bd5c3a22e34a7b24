import { identifyUdp } from "../client/identify.ts";
import { identifyTcp } from "./id_tcp.ts";
import { TARGET } from "../target.ts";
import { intOption, parse, parseTarget } from "./args.ts";
import { jsonLine } from "./terminal_text.ts";

/** `perilink id HOST:PORT`: who answers there? */
export async function runId(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    { tcp: { type: "boolean" }, json: { type: "boolean" }, timeout: { type: "string" } },
    true,
  );
  if (positionals.length !== 1) throw new Error("Cannot identify: give exactly one HOST:PORT");
  const { host, port } = parseTarget(positionals[0]!);
  const timeoutMs = intOption(values.timeout, "timeout", TARGET.client.probeTimeoutMs);
  const r = values.tcp ? await identifyTcp(host, port, { timeoutMs }) : await identifyUdp(host, port, { timeoutMs });
  const out = {
    serverId: r.serverId,
    keyFingerprint: r.keyFingerprint,
    address: r.address,
    port: r.port,
    transport: r.transport,
    generation: r.generation,
    rttMs: Math.round(r.rttMs * 1000) / 1000,
  };
  if (values.json) {
    process.stdout.write(jsonLine(out));
  } else {
    process.stdout.write(
      `server ${out.serverId}\nkey    ${out.keyFingerprint}\nvia    ${out.transport} ${positionals[0]} in ${out.rttMs.toFixed(3)} ms (generation ${out.generation})\n`,
    );
  }
  return 0;
}
