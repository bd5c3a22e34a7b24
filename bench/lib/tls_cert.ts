import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * The throughput benchmark's TLS certificate: self-signed for 127.0.0.1,
 * made when the benchmark starts and never stored. Node 20 can parse X.509
 * certificates but not make them, so the `openssl` command line makes it
 * (an EC P-256 key, one day of validity). The benchmark's process makes it
 * once (`ensureBenchTls()`) and hands it to the server and client processes
 * it forks through their environment: the server presents it, the client
 * trusts exactly it and verifies the server's identity (127.0.0.1) as usual.
 */

export interface BenchTls {
  /** PEM. */
  key: string;
  /** PEM, self-signed; also the client's only trusted CA. */
  cert: string;
}

const KEY_ENV = "PERILINK_BENCH_TLS_KEY";
const CERT_ENV = "PERILINK_BENCH_TLS_CERT";

/** Makes a fresh self-signed certificate for 127.0.0.1 with `openssl`. */
export function makeSelfSignedCert(): BenchTls {
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-tls-"));
  try {
    const keyFile = path.join(dir, "key.pem");
    const certFile = path.join(dir, "cert.pem");
    // Bounded: a certificate takes milliseconds.
    execFileSync(
      "openssl",
      [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", keyFile, "-out", certFile, "-days", "1",
        "-subj", "/CN=perilink bench", "-addext", "subjectAltName=IP:127.0.0.1",
      ],
      { stdio: ["ignore", "ignore", "pipe"], timeout: 20_000 },
    );
    const tls = { key: readFileSync(keyFile, "utf8"), cert: readFileSync(certFile, "utf8") };
    if (new X509Certificate(tls.cert).checkIP("127.0.0.1") === undefined) throw new Error("openssl made a certificate without 127.0.0.1");
    return tls;
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`could not make the benchmark's TLS certificate with openssl${stderr ? `: ${stderr}` : ""}`, { cause: err });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** In the benchmark's process: makes the certificate unless made already, for every child forked after. */
export function ensureBenchTls(): void {
  if (process.env[KEY_ENV] && process.env[CERT_ENV]) return;
  const { key, cert } = makeSelfSignedCert();
  process.env[KEY_ENV] = key;
  process.env[CERT_ENV] = cert;
}

/** In a server or client process: the certificate the benchmark made. */
export function benchTls(): BenchTls {
  const key = process.env[KEY_ENV];
  const cert = process.env[CERT_ENV];
  if (!key || !cert) throw new Error(`no TLS certificate in ${KEY_ENV}/${CERT_ENV}: the benchmark's process makes it (ensureBenchTls) before forking`);
  return { key, cert };
}
