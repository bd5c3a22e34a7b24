/**
 * The man page perilink(1) and the bash completion of the Debian package,
 * both made from `perilink help` — the text `--help` prints — so the three
 * cannot drift apart.
 */

/** Text as roff takes it: backslashes and hyphens escaped, no line starting with a control character. */
function roff(line: string): string {
  const escaped = line.replace(/\\/g, "\\e").replace(/-/g, "\\-");
  return /^[.']/.test(escaped) ? `\\&${escaped}` : escaped;
}

/** The man page (section 1) for the usage text `help` prints. */
export function manPage(help: string, version: string, date: string): string {
  const [title = "", ...rest] = help.split("\n");
  const summary = title.replace(/^perilink \S+: /, "");
  const start = rest.indexOf("Usage:") + 1;
  const end = rest.findIndex((l, i) => i > start && l.trim() === "");
  const usage = rest.slice(start, end).map((l) => l.replace(/^ {2}/, ""));
  // The footer's notes on addresses and documents; its exit status lines become their own section.
  const notes = rest.slice(end + 1).filter((l) => /^HOST:PORT|^See /.test(l));
  return [
    `.TH PERILINK 1 "${date}" "perilink ${version}" "User Commands"`,
    ".SH NAME",
    `perilink \\- ${roff(summary)}`,
    ".SH SYNOPSIS",
    ".nf",
    ...usage.map(roff),
    ".fi",
    ".SH DESCRIPTION",
    "perilink serves applications on every address of a device with one signed",
    "server identity, replaces its own process with a new program version",
    "without closing a port, and keeps one session per server on the hosts",
    "that talk to it.",
    ".PP",
    "Each command prints its own usage with",
    ".BR \\-\\-help .",
    ...notes.flatMap((l) => [".PP", roff(l)]),
    ".SH EXIT STATUS",
    ".TP",
    ".B 0",
    "The command did what it was asked.",
    ".TP",
    ".B 1",
    "It failed: a server that does not answer, a refused key, an address in use.",
    ".TP",
    ".B 2",
    "A usage error: an unknown option, a missing or malformed argument.",
    ".TP",
    ".B 78",
    "A configuration that cannot be used (EX_CONFIG); the service unit does not",
    "restart on it.",
    ".SH FILES",
    ".TP",
    ".I /etc/perilink/config.json",
    "The service's configuration.",
    ".TP",
    ".I /var/lib/perilink",
    "The state directory: identity, trusted keys, control socket.",
    ".SH SEE ALSO",
    ".BR systemctl (1),",
    ".BR journalctl (1);",
    "/usr/share/doc/perilink/README.md.gz",
    "",
  ].join("\n");
}

/** Each command of the usage text and the options its lines name. */
export function commandOptions(help: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string | null = null;
  for (const line of help.split("\n")) {
    const head = /^ {2}perilink (\S+)/.exec(line);
    if (head) current = head[1]!;
    else if (!/^ {10,}\S/.test(line)) current = null;
    if (current === null) continue;
    const opts = out.get(current) ?? [];
    for (const m of line.matchAll(/(?<![\w-])(--[a-z][a-z-]*|-h)\b/g)) if (!opts.includes(m[1]!)) opts.push(m[1]!);
    out.set(current, opts);
  }
  for (const opts of out.values()) if (!opts.includes("--help")) opts.push("--help");
  return out;
}

/** A bash completion script: commands first, then each command's options. */
export function bashCompletion(help: string): string {
  const cmds = commandOptions(help);
  if (cmds.has("help")) cmds.set("version", []); // "perilink help | version"
  const cases = [...cmds].filter(([, opts]) => opts.length > 0).map(([c, opts]) => `    ${c}) opts="${opts.join(" ")}" ;;`);
  return [
    "# bash completion for perilink (made from perilink help)",
    "_perilink() {",
    "  local cur=${COMP_WORDS[COMP_CWORD]}",
    "  if [ \"$COMP_CWORD\" -eq 1 ]; then",
    `    COMPREPLY=($(compgen -W "${[...cmds.keys()].join(" ")}" -- "$cur"))`,
    "    return",
    "  fi",
    "  local opts=\"\"",
    "  case ${COMP_WORDS[1]} in",
    ...cases,
    "  esac",
    "  case $cur in",
    "    -*) COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\")) ;;",
    "    *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;",
    "  esac",
    "}",
    "complete -F _perilink perilink",
    "",
  ].join("\n");
}
