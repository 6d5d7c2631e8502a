import { redactUrl as withoutQuery } from './logger.ts';

/**
 * A URL fit to print or log: the password of its user info, and any query parameter whose
 * name holds "pass" (node-postgres takes `?password=` and `?sslpassword=`), as "***". Works
 * on text that is not a valid URL too: it only replaces.
 */
export function redactUrl(url: string): string {
  // the user info ends at the authority's last '@' (WHATWG URL, as node-postgres reads it), so
  // a password may hold '@' (`//app:Tr0ub@dor@host` printed `//app:***@dor@host` when this
  // stopped at the first), and so may a user name (`//a@b:pw@host` was printed whole)
  return url.replace(/\/\/([^:/?#]*):[^/?#]*@/, '//$1:***@').replace(/([?&][^=&#]*pass[^=&#]*=)[^&#]*/gi, '$1***');
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
      .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'<>]*@/gi, '$1***@')
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
