/**
 * The man page perilink(1) and the bash completion of the Debian package,
 * both made from `perilink help` — the text `--help` prints, its synopsis
 * and its exit status lines included — so the three cannot drift apart.
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
  // The footer's notes on addresses and documents, and a device build's note on the host commands (a paragraph); its exit status lines become their own section.
  const after = rest.slice(end + 1);
  const build = after.findIndex((l) => l.startsWith("This build"));
  const noteEnd = after.findIndex((l, i) => i > build && l.trim() === "");
  const buildNote = build < 0 ? [] : [after.slice(build, noteEnd < 0 ? undefined : noteEnd).join(" ")];
  const notes = [...buildNote, ...after.filter((l) => /^HOST:PORT|^See /.test(l))];
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
    ...exitStatus(rest).flatMap(([code, meaning]) => [".TP", `.B ${code}`, roff(meaning)]),
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

/** The footer's "Exit status: 0 done, 1 failed, 2 …" as [code, meaning] pairs, in order. */
function exitStatus(lines: string[]): [string, string][] {
  const from = lines.findIndex((l) => l.startsWith("Exit status:"));
  if (from < 0) throw new Error("perilink help has no exit status paragraph");
  const to = lines.findIndex((l, i) => i > from && (l.trim() === "" || /^See /.test(l)));
  const text = lines.slice(from, to < 0 ? undefined : to).join(" ").replace(/^Exit status:\s*/, "").replace(/\s+/g, " ").replace(/\.$/, "");
  return text.split(/,\s(?=\d+ )/).map((item) => {
    const [, code = "", meaning = ""] = /^(\d+) (.*)$/.exec(item.trim()) ?? [];
    return [code, meaning.charAt(0).toUpperCase() + meaning.slice(1) + "."];
  });
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
