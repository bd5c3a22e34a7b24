import type { Dispatcher } from "undici";

type Headers = Dispatcher.DispatchOptions["headers"];

/**
 * The request's headers with `host` set to the URL's host, unless the
 * application set one: a server's pool serves every name of that server,
 * and undici would otherwise write the name the pool was opened for. The
 * headers keep the shape they came in (a flat or nested array, or an object).
 */
export function withHost(headers: Headers, host: string): Headers {
  if (headers === undefined || headers === null) return { host };
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      const pairs = headers as unknown as [string, string | string[]][];
      return pairs.some(([k]) => k.toLowerCase() === "host") ? headers : ([...pairs, ["host", host]] as unknown as Headers);
    }
    const flat = headers as string[];
    for (let i = 0; i < flat.length; i += 2) if (String(flat[i]).toLowerCase() === "host") return headers;
    return [...flat, "host", host] as Headers;
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of headers as Iterable<[string, string | string[]]>) out[k] = v;
    return withHost(out, host);
  }
  const obj = headers as Record<string, string | string[] | undefined>;
  for (const k of Object.keys(obj)) if (k.toLowerCase() === "host") return headers;
  return { ...obj, host };
}
