/** Structured logging: one JSON object (or one text line for people) per event, to stderr by default (R4). */

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

export function isLogLevel(v: unknown): v is LogLevel {
  return typeof v === "string" && v in RANK;
}

/** `json`: one object per line, for machines; `text`: `TIME LEVEL event key=value…`, for people at a terminal. */
export type LogFormat = "json" | "text";

export function isLogFormat(v: unknown): v is LogFormat {
  return v === "json" || v === "text";
}

export interface LogOptions {
  format?: LogFormat;
  /** Start each line with its syslog priority (`<3>` error … `<7>` debug), as journald reads a stream it was handed. */
  priorityPrefix?: boolean;
}

const PRIORITY: Record<Exclude<LogLevel, "silent">, number> = { error: 3, warn: 4, info: 6, debug: 7 };

/** A logger that writes `{"time","level","event",...fields}` lines (or their text form) through `write`. */
export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (line) => process.stderr.write(line),
  base: LogFields = {},
  options: LogOptions = {},
): Logger {
  const min = RANK[level];
  const text = options.format === "text";
  const emit = (lvl: Exclude<LogLevel, "silent">, event: string, fields?: LogFields): void => {
    if (RANK[lvl] < min) return;
    // The writer's own fields (pid, generation) last: an event's fields never share their names.
    const rec: LogFields = { time: new Date().toISOString(), level: lvl, event, ...fields, ...base };
    for (const k in rec) if (rec[k] instanceof Error) rec[k] = errorFields(rec[k] as Error);
    const line = text ? textLine(rec) : JSON.stringify(rec);
    write(`${options.priorityPrefix ? `<${PRIORITY[lvl]}>` : ""}${line}\n`);
  };
  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
  };
}

/** `2026-12-01T17:40:00.000Z WARN  session_refused peer=192.0.2.7 why=maxSessions`: values that are not plain tokens as JSON, and nothing but printable ASCII (a peer's text cannot drive the terminal). */
function textLine(rec: LogFields): string {
  const { time, level, event, ...rest } = rec;
  let out = `${String(time)} ${String(level).toUpperCase().padEnd(5)} ${ascii(String(event))}`;
  for (const [k, v] of Object.entries(rest)) {
    if (v === undefined) continue;
    const s = typeof v === "string" && /^[\w.:/@%+,[\]-]+$/.test(v) ? v : JSON.stringify(v);
    out += ` ${ascii(k)}=${ascii(s ?? String(v))}`;
  }
  return out;
}

const ascii = (s: string): string => s.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);

function errorFields(err: Error): LogFields {
  const code = (err as { code?: unknown }).code;
  return code === undefined ? { message: err.message } : { code, message: err.message };
}

export const silentLogger: Logger = createLogger("silent");

/**
 * A logger for events a remote peer can cause at will (refusals, protocol
 * errors, cut-offs): each event is written at most once per `intervalMs`; the
 * next line written for it says how many were left out (`suppressed`). A
 * flood of bad peers then costs a few log lines a second, not one each.
 */
export function throttledLogger(log: Logger, intervalMs = 1000, now: () => number = () => performance.now()): Logger {
  const last = new Map<string, { at: number; suppressed: number }>();
  const wrap =
    (emit: (event: string, fields?: LogFields) => void) =>
    (event: string, fields?: LogFields): void => {
      const t = now();
      const e = last.get(event);
      if (e !== undefined && t - e.at < intervalMs) {
        e.suppressed++;
        return;
      }
      const suppressed = e?.suppressed ?? 0;
      last.set(event, { at: t, suppressed: 0 });
      emit(event, suppressed > 0 ? { ...fields, suppressed } : fields);
    };
  return { debug: wrap(log.debug), info: wrap(log.info), warn: wrap(log.warn), error: wrap(log.error) };
}
