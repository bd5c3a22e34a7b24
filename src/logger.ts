/** Structured logging: one JSON object per line, to stderr by default (R4). */

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

/** A logger that writes `{"time","level","event",...fields}` lines through `write`. */
export function createLogger(
  level: LogLevel = "info",
  write: (line: string) => void = (line) => process.stderr.write(line),
  base: LogFields = {},
): Logger {
  const min = RANK[level];
  const emit = (lvl: Exclude<LogLevel, "silent">, event: string, fields?: LogFields): void => {
    if (RANK[lvl] < min) return;
    const rec: LogFields = { time: new Date().toISOString(), level: lvl, event, ...base, ...fields };
    for (const k in rec) if (rec[k] instanceof Error) rec[k] = errorFields(rec[k] as Error);
    write(JSON.stringify(rec) + "\n");
  };
  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
  };
}

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
