import { PerilinkError } from "../errors.ts";
import { CLOSED_PIPE_EXIT_CODE, handleClosedPipe, isClosedPipe } from "./closed_pipe.ts";
import { runCall } from "./call_command.ts";
import { runId } from "./id_command.ts";
import { runForget } from "./forget_command.ts";
import { runKey } from "./key_command.ts";
import { runPair } from "./pair_command.ts";
import { runTrust } from "./trust_command.ts";
import { runServe } from "./serve_command.ts";
import { runStatus } from "./status_command.ts";
import { runUpgrade } from "./upgrade_command.ts";
import { VERSION } from "../version.ts";
import { printable } from "./terminal_text.ts";

const USAGE = `perilink ${VERSION}: a runtime for network peripherals and the hosts that talk to them

Usage:
  perilink serve  [--config FILE] [--listen HOST:PORT]... [--app MODULE] [--state-dir DIR] [--log-level LEVEL]
                  [--workers N|auto|MIN..MAX] [--dispatch manager|semaphore] [--access keys|open]
  perilink id     HOST:PORT [--tcp] [--json] [--timeout MS]
  perilink call   HOST:PORT [HOST:PORT]... [--app NAME] [--data TEXT] [--json | --raw] [--timeout MS]
                  [--name-server ADDR[:PORT]]... [--resolve hosts,dns,mdns,llmnr,netbios] [--interface IF]...
                  [--prefer bandwidth=1,hops=1,mtu=1,rtt=1] [--state-dir DIR] [--expect SHA256:KEY] [--trust-new]
                  (HOST: an address or a name)
  perilink forget NAME|ADDRESS|SERVER-ID|SHA256:KEY [--state-dir DIR] [--json]  (a server replaced on purpose)
  perilink key    [--state-dir DIR] [--json]
  perilink trust  add FINGERPRINT [--app NAME]... [--comment TEXT] | list [--json] | remove FINGERPRINT [--state-dir DIR]
  perilink pair   [--app NAME]... [--ttl SECONDS] [--json] [--state-dir DIR]  (device: a one-time code)
  perilink pair   HOST:PORT CODE [--json] [--timeout MS] [--state-dir DIR]   (host)
  perilink status [--state-dir DIR] [--json]
  perilink upgrade [--state-dir DIR] [--program PATH] [--app MODULE] [--timeout MS] [--json]
  perilink help | version

HOST:PORT is 127.0.0.1:1025, [::1]:1025, [fe80::1%eth0]:1025, or auto:1025 (serve only).
See README.md and docs/ for configuration and the wire protocol.
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve: runServe,
  id: runId,
  call: runCall,
  key: runKey,
  forget: runForget,
  trust: runTrust,
  pair: runPair,
  status: runStatus,
  upgrade: runUpgrade,
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === "version" || cmd === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const run = COMMANDS[cmd];
  if (!run) {
    process.stderr.write(`perilink: unknown command "${printable(cmd)}"; run "perilink help"\n`);
    return 2;
  }
  try {
    return await run(rest);
  } catch (err) {
    if (isClosedPipe(err)) return CLOSED_PIPE_EXIT_CODE; // a write found the reader of our output gone
    const e = err as Error;
    const code = err instanceof PerilinkError ? ` [${err.code}]` : (e as { code?: string }).code ? ` [${(e as { code?: string }).code}]` : "";
    // A message may carry a server's words (its error text, names from the network): escaped for the terminal.
    process.stderr.write(`perilink ${cmd}: ${printable(e.message)}${printable(code)}\n`);
    return 1;
  }
}

handleClosedPipe(process.argv[2] === "serve" ? "ignore" : "exit");
main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0 || process.exitCode === undefined) process.exitCode = code;
  },
  (err: unknown) => {
    if (isClosedPipe(err)) {
      process.exitCode = CLOSED_PIPE_EXIT_CODE;
      return;
    }
    process.stderr.write(`perilink: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
