import type { Dispatcher } from "undici";

type Headers = Dispatcher.DispatchOptions["headers"];

const isHost = (name: unknown, value: unknown): boolean => String(name).toLowerCase() === "host" && value !== undefined && value !== null;

/**
 * The request's headers with `host` set to the URL's host, unless the
 * application set one (a `host` of undefined or null is none): a server's
 * pool serves every name of that server, and undici would otherwise write
 * the name the pool was opened for. A flat array and an object keep their
 * shape; any other iterable (Headers, a Map, pairs) becomes a flat array, so
 * repeated names stay repeated.
 */
export function withHost(headers: Headers, host: string): Headers {
  if (headers === undefined || headers === null) return { host };
  if (Array.isArray(headers) && (headers.length === 0 || !Array.isArray(headers[0]))) {
    const flat = headers as unknown[];
    for (let i = 0; i < flat.length; i += 2) if (isHost(flat[i], flat[i + 1])) return headers;
    return [...flat, "host", host] as Headers;
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    const flat: unknown[] = [];
    for (const [k, v] of headers as Iterable<[string, string | string[]]>) {
      if (Array.isArray(v)) for (const one of v) flat.push(k, one);
      else flat.push(k, v);
    }
    return withHost(flat as Headers, host);
  }
  const obj = headers as Record<string, string | string[] | undefined>;
  for (const k of Object.keys(obj)) if (isHost(k, obj[k])) return headers;
  const out: Record<string, string | string[] | undefined> = {};
  for (const k of Object.keys(obj)) if (k.toLowerCase() !== "host") out[k] = obj[k];
  out.host = host;
  return out;
}
