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

/** `printable` for a one-line field (a table cell, a status value): tab and newline are escaped too, so a value cannot add lines. */
export function printableLine(text: string): string {
  return printable(text).replace(/[\t\n]/g, escapeOne);
}

/** DEL, C1 and the bidirectional marks, overrides and isolates: escaped in every output, JSON too. */
const DEL_C1_BIDI = "\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069";
// eslint-disable-next-line no-control-regex
const CLASS = `[\\x00-\\x08\\x0b-\\x1f${DEL_C1_BIDI}\\\\]`;
const UNSAFE = new RegExp(CLASS);
const UNSAFE_ALL = new RegExp(CLASS, "g");

function escapeOne(c: string): string {
  if (c === "\\") return "\\\\";
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * `value` as one line of JSON that is also safe on a terminal: JSON escapes
 * C0 controls itself; DEL, C1 (xterm takes U+009B and U+009D as CSI and OSC)
 * and the bidirectional controls are escaped here too (`\u009b`), which
 * leaves the data the same for any JSON reader.
 */
export function jsonLine(value: unknown): string {
  return JSON.stringify(value).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`) + "\n";
}

const JSON_UNSAFE = new RegExp(`[${DEL_C1_BIDI}\\u2028\\u2029]`, "g");
