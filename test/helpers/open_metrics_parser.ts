import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

/** A parsed exposition: family name → its type and samples (name, labels, value). */
export type ParsedMetrics = Record<string, { type: string; samples: [string, Record<string, string>, number][] }>;

const PYTHON = "/usr/bin/python3";
const SCRIPT = `
import json, math, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value if math.isfinite(s.value) else str(s.value)] for s in f.samples]}
print(json.dumps(out))
`;

/** Why the real parser cannot run here (Debian's python3-prometheus-client is missing), or null. */
export function openMetricsParserMissing(): string | null {
  if (!existsSync(PYTHON)) return "no /usr/bin/python3";
  try {
    execFileSync(PYTHON, ["-c", "import prometheus_client.openmetrics.parser"], { stdio: "ignore" });
    return null;
  } catch {
    return "python3-prometheus-client is not installed (apt install python3-prometheus-client)";
  }
}

/** Parses `text` with prometheus_client's OpenMetrics parser, which throws on anything the format does not allow. */
export function parseOpenMetrics(text: string): ParsedMetrics {
  return JSON.parse(execFileSync(PYTHON, ["-c", SCRIPT], { input: text, encoding: "utf8" })) as ParsedMetrics;
}

/** The value of the sample `name` with exactly these labels (or without labels). */
export function sampleValue(m: ParsedMetrics, family: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const f = m[family];
  const s = f?.samples.find(([n, l]) => n === name && JSON.stringify(Object.entries(l).sort()) === JSON.stringify(Object.entries(labels).sort()));
  return s?.[2];
}
