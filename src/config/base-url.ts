/**
 * A base URL setting (`http.publicUrl`): the server appends `/v1/download/<name>/<version>?...`
 * to it (`artifacts/url-signer.ts`) and devices fetch the result. Anything but an absolute
 * http(s) URL made every download fail on the devices, with the signed URL in the error, long
 * after the server had started without a word; so it is refused at start, with the rest.
 */

/** What is wrong with `raw` as a base URL, or undefined when it is fit. */
export function baseUrlProblem(raw: string): string | undefined {
  if (/\s/.test(raw)) return 'it holds white space';
  // WHATWG URL would take `http:host` or `http:///host` as http://host/, but the server
  // concatenates the text as given, so the text itself must be what a device can fetch
  if (!/^https?:\/\/[^/\\?#]/i.test(raw)) return 'it does not start with http:// or https:// and a host';
  const port = /^https?:\/\/(?:[^/?#]*@)?(?:\[[^\]/?#]*\]|[^/?#:]*):(\d+)(?:[/?#]|$)/i.exec(raw)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `port ${port} is not from 1 to 65535`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'it is not a valid URL';
  }
  if (url.username || url.password) return 'it holds user info (user:password@), which a download request cannot carry';
  // the server adds its own query (device, exp, kid, sig): a second '?' breaks the signature
  if (raw.includes('?')) return 'it has a query (?...): download URLs bring their own';
  if (raw.includes('#')) return 'it has a fragment (#...), which would cut off the download path';
  return undefined;
}
