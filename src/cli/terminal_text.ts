/**
 * Text from the network or from a server, made safe to print on a terminal:
 * control characters — C0 (but tab and newline), DEL, C1 (U+0080–U+009F,
 * where U+009B is a CSI on some terminals) — and the bidirectional overrides
 * and isolates (which can make a line read other than it is) become visible
 * escapes (`\x1b`, `\u202e`), so a peer cannot send escape sequences (OSC 52
 * clipboard writes, title changes, cursor moves) to whoever reads the output.
 * A backslash is escaped too, so an escape seen on screen is never ambiguous.
 * `--json` output needs none of this (JSON escapes controls itself).
 */
export function printable(text: string): string {
  return UNSAFE.test(text) ? text.replace(UNSAFE_ALL, escapeOne) : text;
}

// eslint-disable-next-line no-control-regex
const CLASS = "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069\\\\]";
const UNSAFE = new RegExp(CLASS);
const UNSAFE_ALL = new RegExp(CLASS, "g");

function escapeOne(c: string): string {
  if (c === "\\") return "\\\\";
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

