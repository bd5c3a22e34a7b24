import { ConfigError, PerilinkError, StateDirError, UsageError } from "../errors.ts";
import { CLOSED_PIPE_EXIT_CODE, handleClosedPipe, isClosedPipe } from "./closed_pipe.ts";
import { runBrowse } from "./browse_command.ts";
import { runCall } from "./call_command.ts";
import { runId } from "./id_command.ts";
import { runForget } from "./forget_command.ts";
import { runKey } from "./key_command.ts";
import { runPair } from "./pair_command.ts";
import { runTrust } from "./trust_command.ts";
import { runServe } from "./serve_command.ts";
import { runStatus } from "./status_command.ts";
import { runMetrics } from "./metrics_command.ts";
import { runAgent } from "./agent_command.ts";
import { runSessions } from "./sessions_command.ts";
import { runUpgrade } from "./upgrade_command.ts";
import { BUILD_NOTE, HOST_USAGE, ID_TCP } from "./host_usage.ts";
import { VERSION } from "../version.ts";
import { printable } from "./terminal_text.ts";

const FOOTER = `HOST:PORT is 127.0.0.1:1025, [::1]:1025, [fe80::1%eth0]:1025, or auto:1025 (serve only).
"perilink COMMAND --help" shows one command's usage.
Exit status: 0 done, 1 failed, 2 a usage error (an unknown option, a missing
or malformed argument), 78 a configuration, option value or state directory
that cannot be used (the service unit restarts on neither 2 nor 78).
See README.md and docs/ for configuration and the wire protocol.
`;

const USAGE = `perilink ${VERSION}: a runtime for network peripherals and the hosts that talk to them

Usage:
  perilink serve  [--config FILE] [--listen HOST:PORT]... [--app MODULE] [--state-dir DIR] [--log-level LEVEL] [--log-format text|json]
                  [--workers N|auto|MIN..MAX] [--dispatch manager|semaphore] [--access keys|open]
  perilink id     HOST:PORT ${ID_TCP}[--json] [--timeout MS]
  perilink trust  add FINGERPRINT [--app NAME]... [--comment TEXT] | list [--json] | remove FINGERPRINT [--state-dir DIR]
  perilink pair   [--app NAME]... [--ttl SECONDS] [--json] [--state-dir DIR]  (device: a one-time code)
  perilink status [--state-dir DIR] [--json]
  perilink metrics [--state-dir DIR]  (OpenMetrics text, as /metrics serves it)
  perilink upgrade [--state-dir DIR] [--program PATH] [--app MODULE] [--timeout MS] [--json]
${HOST_USAGE}  perilink help | version

${BUILD_NOTE}${FOOTER}`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve: runServe,
  id: runId,
  call: runCall,
  browse: runBrowse,
  key: runKey,
  forget: runForget,
  trust: runTrust,
  pair: runPair,
  status: runStatus,
  metrics: runMetrics,
  agent: runAgent,
  sessions: runSessions,
  upgrade: runUpgrade,
};

/** The command named `name`: an own entry of COMMANDS only ("constructor" or "toString" is no command). */
const commandOf = (name: string): ((args: string[]) => Promise<number>) | undefined => (Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined);

/** Exit codes (documented in `perilink help`): a command line that says nothing sensible, a configuration that cannot be used (sysexits' EX_CONFIG: systemd does not restart on it), anything else that failed. */
export const EXIT_USAGE = 2;
export const EXIT_CONFIG = 78;

/** The lines of USAGE about `cmd` (its synopsis and continuation lines), or null for a command USAGE does not list. */
export function commandUsage(cmd: string): string | null {
  const lines = USAGE.split("\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith(`  perilink ${cmd} `) && lines[i] !== `  perilink ${cmd}`) continue;
    out.push(lines[i]!);
    while (i + 1 < lines.length && /^ {10,}\S/.test(lines[i + 1]!)) out.push(lines[++i]!);
  }
  return out.length === 0 ? null : `Usage:\n${out.join("\n")}\n\n${FOOTER}`;
}

/** The options of `cmd` that take a value (`--data TEXT`: an upper-case word follows), from USAGE. */
function valueOptions(cmd: string): Set<string> {
  const out = new Set<string>();
  for (const m of (commandUsage(cmd) ?? "").matchAll(/(--[a-z][a-z-]*)[ =](?:[A-Z]|SHA256)/g)) out.add(m[1]!);
  for (const m of (commandUsage(cmd) ?? "").matchAll(/(--[a-z][a-z-]*) [a-z]+\|/g)) out.add(m[1]!); // --log-format text|json
  return out;
}

/**
 * Whether the arguments ask for help: `--help` or `-h` as an argument of its
 * own — not the value of an option that takes one (`--data -h` sends "-h"),
 * not after `--`.
 */
function asksForHelp(cmd: string, args: string[]): boolean {
  const takesValue = valueOptions(cmd);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") return false;
    if (a === "--help" || a === "-h") return true;
    if (takesValue.has(a)) i++;
  }
  return false;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    const topic = cmd === "help" ? rest[0] : undefined;
    // A command without usage lines of its own (a host command in a device build): the whole usage, which says where it is.
    const text = topic === undefined ? USAGE : (commandUsage(topic) ?? (commandOf(topic) ? USAGE : null));
    if (text === null) {
      process.stderr.write(`perilink: no help for "${printable(topic!)}": it is not a command; run "perilink help"\n`);
      return EXIT_USAGE;
    }
    (cmd === undefined ? process.stderr : process.stdout).write(text);
    return cmd === undefined ? EXIT_USAGE : 0;
  }
  if (commandOf(cmd) && asksForHelp(cmd, rest)) {
    process.stdout.write(commandUsage(cmd) ?? USAGE);
    return 0;
  }
  if (cmd === "version" || cmd === "--version") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const run = commandOf(cmd);
  if (!run) {
    process.stderr.write(`perilink: unknown command "${printable(cmd)}"; run "perilink help"\n`);
    return EXIT_USAGE;
  }
  try {
    return await run(rest);
  } catch (err) {
    if (isClosedPipe(err)) return CLOSED_PIPE_EXIT_CODE; // a write found the reader of our output gone
    const e = err as Error;
    // Then why, when a failed upgrade's new program said so with a code: "[PERILINK_UPGRADE_FAILED] [PERILINK_APP_NOT_READY]".
    const reason = (e as { reason?: unknown }).reason;
    const code = (err instanceof PerilinkError ? ` [${err.code}]` : (e as { code?: string }).code ? ` [${(e as { code?: string }).code}]` : "") + (typeof reason === "string" ? ` [${reason}]` : "");
    // A message may carry a server's words (its error text, names from the network): escaped for the terminal.
    const hint = err instanceof UsageError ? ` (usage: "perilink ${cmd} --help")` : "";
    process.stderr.write(`perilink ${cmd}: ${printable(e.message)}${printable(code)}${hint}\n`);
    if (err instanceof UsageError) return EXIT_USAGE;
    return err instanceof ConfigError || err instanceof StateDirError ? EXIT_CONFIG : 1;
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
