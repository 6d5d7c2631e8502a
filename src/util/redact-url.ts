import { redactUrl as withoutQuery } from './logger.ts';

/**
 * A URL fit to print or log, parsable or not (the one redaction of a URL's user info): the
 * password of its user info, and any query parameter whose name holds "pass" (node-postgres
 * takes `?password=` and `?sslpassword=`), as "***". It only replaces text, so it works on a
 * value that is no valid URL too (a setting refused at start-up is quoted through it).
 *
 * The user info is taken to end at the value's last '@'. A password may hold '@', and '/',
 * '?' or '#' too (a generated one, base64's '/'): a URL parser then ends the authority
 * inside it (`postgres://u:pa/ss@host` does not parse; `postgres://u:123/ss@host` parses as
 * host u, port 123, path /ss@host), so no rule that follows the parser, or stops at the first
 * '/', can find the password's end: `//u:pa/ss@host` was printed whole. An '@' after the
 * authority (a query's `?application_name=a@b`) makes this hide more than the password
 * (`//app:***@b`), never less. The user name before the ':' stays; user info without a ':'
 * has no password and is left as it is.
 */
export function redactUrl(url: string): string {
  // after the first scheme:// (a message quoting a URL is passed too: bench/options.ts); with
  // none (`u:pa/ss@host`, a scheme left out), from the start
  const scheme = /[a-z][a-z0-9+.-]*:\/\//i.exec(url);
  const start = scheme ? scheme.index + scheme[0].length : 0;
  const at = url.lastIndexOf('@');
  const colon = url.indexOf(':', start);
  const hidden = at > start && colon !== -1 && colon < at ? `${url.slice(0, colon)}:***${url.slice(at)}` : url;
  return hidden.replace(/([?&][^=&#]*pass[^=&#]*=)[^&#]*/gi, '$1***');
}

/**
 * A URL fit for a log line: no password in it (`***`), no query (`?<redacted>`). It goes
 * through `redactUrl`, so a password holding '/' is hidden too: a URL parser read
 * `mqtt://u:123/ss@host` as host u, port 123, path /ss@host, with no password to hide, and
 * the line showed it.
 */
export function safeUrl(url: string): string {
  return withoutQuery(redactUrl(url));
}

/**
 * Text fit to log or report (an error message from fetch, undici or a server, an installer's
 * reason): every URL in it, parsable or not (`Failed to parse URL from
 * notaurl/v1/download/...?sig=...`), with its query as `?<redacted>`, as the `url=` log
 * fields have it (logger.ts `redactUrl`), and its user info as `***@`. A download URL's query
 * is its signature, good for a download until it expires: the message goes to the device's
 * log, its shadow and the job's record, which viewer tokens read. A '?' that starts no query
 * (`foo?bar`, `really?!`) is left as it is.
 */
export function redactUrlsIn(text: string): string {
  return (
    text
      // up to the word's last '@', as redactUrl: a password may hold '/', '?' or '#'
      .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s"'<>]*@/gi, '$1***@')
      // a word holding '?' and something after it, when that is a URL's query
      .replace(/[^\s"'<>()[\]{}]*\?[^\s"'<>()[\]{}]+/g, (word) => (startsQuery(word) ? withoutQuery(word) : word))
  );
}

/**
 * True when the word's first '?' starts a URL's query: the word has a scheme before it
 * (`https://cdn/x?...`, `url=http://h/p?...`), or what follows is `name=value` (every signed
 * URL's query, Updraft's `?device=...&sig=...` as S3's `?X-Amz-...=`), whatever precedes it:
 * a URL fetch could not parse has no scheme (`notaurl/v1/download/fw?device=...`). Text with
 * a '?' and neither (`foo?bar`) is prose, not a URL.
 */
function startsQuery(word: string): boolean {
  const q = word.indexOf('?');
  return word.slice(0, q).includes('://') || /^[^=&#]+=/.test(word.slice(q + 1));
}
