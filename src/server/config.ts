import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError } from "../errors.ts";
import { checkMs } from "../duration.ts";
import { isLogLevel, type LogLevel } from "../logger.ts";
import { TARGET } from "../target.ts";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "./limits.ts";
import { parseListenSpec, type ListenSpec } from "./listen_spec.ts";
import type { ProbeLimits } from "./probe_responder.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { ADVERTISE_MODES, type DiscoveryConfig } from "./discovery.ts";

/** A server's whole configuration, after defaults and validation (R5). */
export interface ServerConfig {
  listen: ListenSpec[];
  /** The listen entries as written, for status and logs. */
  listenText: string[];
  /** A built-in app name (`demo`) or a module path. */
  app: string;
  stateDir: string;
  limits: ServerLimits;
  probe: ProbeLimits;
  /** How often `auto` listeners look for new and vanished addresses; 0 turns it off. */
  rescanIntervalMs: number;
  /** How long `drain()` lets started requests finish before closing what is left. */
  drainTimeoutMs: number;
  /** After an upgrade handed over, how long this process can still take its sockets back if the new one dies; 0: not at all. */
  probationMs: number;
  logLevel: LogLevel;
  /** Service processes (S5): 1..1 is one process serving alone, with no manager. */
  workers: WorkerRange;
  /** How a group's service processes get connections (S5). */
  dispatch: Dispatch;
  /** Connections one service process serves at once before the group counts it busy. */
  workerSlots: number;
  /** A service process above `workers.min` idle this long is retired. */
  workerIdleMs: number;
  /** Who may open channels: `keys` (default) only trusted client keys, `open` any client. Sessions are sealed either way. */
  access: Access;
  /** DNS-SD advertising (discovery.ts); off unless configured. */
  discovery: DiscoveryConfig;
  /** The HTTP listener for `/metrics` and `/healthz`, if one is configured (`metrics.listen`). */
  metrics: MetricsEndpoint | null;
}

/** Where `/metrics` and `/healthz` are served: one address (never `auto`), one port. */
export interface MetricsEndpoint {
  address: string;
  port: number;
  /** As written, for messages. */
  text: string;
}

/** `keys`: only clients whose keys the state directory trusts (trusted_keys.ts); `open`: any client. */
export type Access = "keys" | "open";

export interface WorkerRange {
  min: number;
  max: number;
}

/**
 * `manager`: the manager accepts and passes each connection to a service
 * process with a free slot. `semaphore`: the service processes take turns
 * accepting, one holder of the accept semaphore at a time.
 */
export type Dispatch = "manager" | "semaphore";

/** What a config file or the command line may set; every key optional. */
export interface ServerConfigInput {
  listen?: string[];
  app?: string;
  stateDir?: string;
  limits?: Partial<ServerLimits>;
  probe?: Partial<ProbeLimits>;
  rescanIntervalMs?: number;
  drainTimeoutMs?: number;
  probationMs?: number;
  logLevel?: LogLevel;
  /** A count, "auto" (the machine's cores) or "MIN..MAX". */
  workers?: number | string;
  dispatch?: Dispatch;
  workerSlots?: number;
  workerIdleMs?: number;
  access?: Access;
  metrics?: { listen?: string };
  discovery?: Partial<DiscoveryConfig>;
}

export const DEFAULT_LISTEN = ["auto:1025"];
export const DEFAULT_RESCAN_INTERVAL_MS = 5000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 30000;
export const DEFAULT_PROBATION_MS = 1000;
export const DEFAULT_DISPATCH: Dispatch = "manager";
export const DEFAULT_WORKER_SLOTS = 64;
export const DEFAULT_WORKER_IDLE_MS = 30000;
/** More service processes than this is a typo, not a device. */
export const MAX_WORKERS = 256;

const TOP_KEYS = [
  "listen",
  "app",
  "stateDir",
  "limits",
  "probe",
  "rescanIntervalMs",
  "drainTimeoutMs",
  "probationMs",
  "logLevel",
  "workers",
  "dispatch",
  "workerSlots",
  "workerIdleMs",
  "access",
  "metrics",
  "discovery",
];
const PROBE_KEYS = Object.keys(TARGET.probe);
/** Limits whose range is not 1…2^31−1: byte budgets too small to hold a frame's header make no sense. */
const LIMIT_RANGES: Record<string, [number, number]> = {
  maxFrameBytes: [1024, 16 * 1024 * 1024],
  maxSessionOutputBytes: [16 * 1024, 0x7fffffff],
  maxBufferedBytes: [64 * 1024, 0x7fffffff],
  sessionRatePerPeer: [0, 1_000_000], // 0: no rate limit
  sessionRateGlobal: [0, 1_000_000],
  goAwaySpreadMs: [0, 60_000], // 0: every GOAWAY at once
  upgradeSurge: [1, MAX_WORKERS],
};

function checkKeys(obj: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) {
      throw new ConfigError(`Cannot use configuration: unknown key "${where}${k}"; known keys are ${allowed.join(", ")}`);
    }
  }
}

function int(v: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`Cannot use configuration: "${name}" must be an integer from ${min} to ${max}, not ${JSON.stringify(v)}`);
  }
  return v;
}

/** A millisecond key: whole, and within what a timer can wait (`MAX_TIMER_MS`). */
function ms(v: unknown, name: string, min: number): number {
  return checkMs(v, "configuration", name, min, true);
}

function object(v: unknown, name: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new ConfigError(`Cannot use configuration: "${name}" must be an object`);
  }
  return v as Record<string, unknown>;
}

/** Reads and parses a JSON configuration file; errors name the file. */
export async function readConfigFile(file: string): Promise<ServerConfigInput> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    throw new ConfigError(`Cannot read configuration ${file}: ${(err as Error).message}`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`Cannot parse configuration ${file}: ${(err as Error).message}`, { cause: err });
  }
  const obj = object(data, path.basename(file));
  checkKeys(obj, TOP_KEYS, "");
  return obj as ServerConfigInput;
}

/**
 * Validates `input` (a config file's contents, then command-line values over
 * it) and fills in defaults from the build target. Throws `ConfigError`
 * naming the offending key.
 */
export function resolveConfig(input: ServerConfigInput, env: Record<string, string | undefined> = process.env, cores = os.availableParallelism?.() ?? os.cpus().length): ServerConfig {
  checkKeys(input as Record<string, unknown>, TOP_KEYS, "");
  const listenText = input.listen ?? DEFAULT_LISTEN;
  if (!Array.isArray(listenText) || listenText.length === 0) {
    throw new ConfigError(`Cannot use configuration: "listen" must be a non-empty list such as ["auto:1025"]`);
  }
  const listen = listenText.map((e) => parseListenSpec(e));
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS };
  if (input.limits !== undefined) {
    const l = object(input.limits, "limits");
    checkKeys(l, Object.keys(DEFAULT_SERVER_LIMITS), "limits.");
    for (const [k, v] of Object.entries(l)) {
      const [min, max] = LIMIT_RANGES[k] ?? [1, 0x7fffffff];
      limits[k as keyof ServerLimits] = int(v, `limits.${k}`, min, max);
    }
  }
  const probe: ProbeLimits = { ...TARGET.probe };
  if (input.probe !== undefined) {
    const p = object(input.probe, "probe");
    checkKeys(p, PROBE_KEYS, "probe.");
    for (const [k, v] of Object.entries(p)) probe[k as keyof ProbeLimits] = int(v, `probe.${k}`, 1, 1_000_000);
  }
  if (input.app !== undefined && (typeof input.app !== "string" || input.app === "")) {
    throw new ConfigError(`Cannot use configuration: "app" must be a module path or "demo"`);
  }
  if (input.stateDir !== undefined && (typeof input.stateDir !== "string" || input.stateDir === "")) {
    throw new ConfigError(`Cannot use configuration: "stateDir" must be a directory path`);
  }
  if (input.logLevel !== undefined && !isLogLevel(input.logLevel)) {
    throw new ConfigError(`Cannot use configuration: "logLevel" must be debug, info, warn, error or silent`);
  }
  if (input.dispatch !== undefined && input.dispatch !== "manager" && input.dispatch !== "semaphore") {
    throw new ConfigError(`Cannot use configuration: "dispatch" must be "manager" or "semaphore", not ${JSON.stringify(input.dispatch)}`);
  }
  if (input.access !== undefined && input.access !== "keys" && input.access !== "open") {
    throw new ConfigError(`Cannot use configuration: "access" must be "keys" (only trusted client keys) or "open" (any client), not ${JSON.stringify(input.access)}`);
  }
  return {
    listen,
    listenText,
    app: input.app ?? "demo",
    stateDir: path.resolve(input.stateDir ?? defaultStateDir(env)),
    limits,
    probe,
    rescanIntervalMs: input.rescanIntervalMs === undefined ? DEFAULT_RESCAN_INTERVAL_MS : ms(input.rescanIntervalMs, "rescanIntervalMs", 0),
    drainTimeoutMs: input.drainTimeoutMs === undefined ? DEFAULT_DRAIN_TIMEOUT_MS : ms(input.drainTimeoutMs, "drainTimeoutMs", 0),
    probationMs: input.probationMs === undefined ? DEFAULT_PROBATION_MS : ms(input.probationMs, "probationMs", 0),
    logLevel: input.logLevel ?? "info",
    workers: parseWorkers(input.workers ?? 1, cores),
    dispatch: input.dispatch ?? DEFAULT_DISPATCH,
    workerSlots: input.workerSlots === undefined ? DEFAULT_WORKER_SLOTS : int(input.workerSlots, "workerSlots", 1, 1_000_000),
    workerIdleMs: input.workerIdleMs === undefined ? DEFAULT_WORKER_IDLE_MS : ms(input.workerIdleMs, "workerIdleMs", 100),
    access: input.access ?? "keys",
    metrics: metricsEndpoint(input.metrics, listen),
    discovery: parseDiscovery(input.discovery),
  };
}

/** `metrics.listen`: an address and a port of its own, not one of the port group's. */
function metricsEndpoint(v: unknown, listen: ListenSpec[]): MetricsEndpoint | null {
  if (v === undefined) return null;
  const m = object(v, "metrics");
  checkKeys(m, ["listen"], "metrics.");
  if (m.listen === undefined) return null;
  const bad = (why: string): ConfigError => new ConfigError(`Cannot use configuration: "metrics.listen" ${why}; write e.g. "127.0.0.1:9464" or "[::1]:9464"`);
  if (typeof m.listen !== "string") throw bad("must be a string");
  let spec: ListenSpec;
  try {
    spec = parseListenSpec(m.listen);
  } catch (err) {
    throw bad(`is malformed (${(err as Error).message})`);
  }
  if (spec.kind !== "address") throw bad("must name one address, not auto");
  if (spec.port === 0) throw bad("must name a port, not 0");
  if (listen.some((l) => l.port === spec.port && (l.kind === "auto" || l.address === spec.address))) throw bad(`uses port ${spec.port}, which the port group listens on`);
  return { address: spec.address, port: spec.port, text: m.listen };
}

/** `discovery`: `{"advertise": "off" | "builtin" | "avahi" | "auto"}`, off by default (a host does not multicast unasked). */
function parseDiscovery(v: unknown): DiscoveryConfig {
  if (v === undefined) return { advertise: "off" };
  const d = object(v, "discovery");
  checkKeys(d, ["advertise"], "discovery.");
  const advertise = d.advertise ?? "off";
  if (!ADVERTISE_MODES.includes(advertise as DiscoveryConfig["advertise"])) {
    throw new ConfigError(`Cannot use configuration: "discovery.advertise" must be ${ADVERTISE_MODES.map((m) => `"${m}"`).join(", ")}, not ${JSON.stringify(advertise)}`);
  }
  return { advertise: advertise as DiscoveryConfig["advertise"] };
}

/** `workers`: a count, "auto" (`cores`), or "MIN..MAX" (either end may be "auto"). */
export function parseWorkers(v: unknown, cores: number): WorkerRange {
  const one = (x: unknown): number => {
    if (x === "auto") return Math.min(Math.max(cores, 1), MAX_WORKERS);
    const n = typeof x === "string" && /^\d+$/.test(x) ? Number(x) : x;
    return int(n, "workers", 1, MAX_WORKERS);
  };
  if (typeof v === "string" && v.includes("..")) {
    const [a, b, ...rest] = v.split("..");
    if (rest.length > 0) throw new ConfigError(`Cannot use configuration: "workers" must be a count, "auto" or "MIN..MAX", not ${JSON.stringify(v)}`);
    const min = one(a);
    const max = one(b);
    if (min > max) throw new ConfigError(`Cannot use configuration: "workers" ${v} has MIN above MAX; write e.g. "1..4"`);
    return { min, max };
  }
  if (typeof v !== "number" && typeof v !== "string") {
    throw new ConfigError(`Cannot use configuration: "workers" must be a count, "auto" or "MIN..MAX", not ${JSON.stringify(v)}`);
  }
  const n = one(v);
  return { min: n, max: n };
}
