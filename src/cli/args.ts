import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.ts";

/** `parseArgs` with strict checking, turning its errors into one-line `UsageError`s (exit 2). */
export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
  allowPositionals = false,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args, options, strict: true, allowPositionals });
    return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
  } catch (err) {
    throw new UsageError(`Cannot read arguments: ${(err as Error).message}`);
  }
}

/** A positive integer option, or the default. */
export function intOption(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`Cannot read arguments: --${name} must be a positive integer`);
  return n;
}

/** Splits HOST:PORT (IPv6 in brackets, zone allowed) for a client command. */
export function parseTarget(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535 || Number(m[2]) === 0) {
    throw new UsageError(`Cannot use target "${text}": write HOST:PORT, e.g. 127.0.0.1:1025 or [::1]:1025`);
  }
  return { host: m[1]!, port: Number(m[2]) };
}
