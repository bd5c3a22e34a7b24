import { ConfigError } from "./errors.ts";

/**
 * The longest delay a timer takes: 2^31−1 ms (about 24.8 days). Node and
 * Deno fire a longer one after 1 ms, so an option past it would cut short
 * what it was meant to wait for; every millisecond option is checked
 * against it.
 */
export const MAX_TIMER_MS = 0x7fffffff;

/**
 * `value` as a number of milliseconds in `min`..MAX_TIMER_MS, or a
 * `ConfigError` (`PERILINK_CONFIG`) naming `key` (of `where`: "configuration",
 * "client option", …) and the range. `integer`:
 * whole milliseconds only (configuration files); otherwise any finite number.
 */
export function checkMs(value: unknown, where: string, key: string, min = 0, integer = false): number {
  const err = msError(value, where, key, min, integer);
  if (err) throw err;
  return value as number;
}

/** What `checkMs` would throw, or null: for callers that reject instead. */
export function msError(value: unknown, where: string, key: string, min = 0, integer = false): ConfigError | null {
  if (typeof value === "number" && Number.isFinite(value) && value >= min && value <= MAX_TIMER_MS && (!integer || Number.isInteger(value))) return null;
  return new ConfigError(
    `Cannot use ${where}: "${key}" must be ${integer ? "an integer" : "a number"} from ${min} to ${MAX_TIMER_MS} ms, not ${typeof value === "bigint" ? `${value}n` : (JSON.stringify(value) ?? String(value))}`,
  );
}
