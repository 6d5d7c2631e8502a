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
 * Text fit to log or report (an error message from fetch, undici or a server): every URL in
 * it, parsable or not (`Failed to parse URL from notaurl/v1/download/...?sig=...`), with its
 * query as `?<redacted>`, as the `url=` log fields have it (logger.ts `redactUrl`), and its
 * user info as `***@`. A download URL's query is its signature, good for a download until it
 * expires: the message goes to the device's log, its shadow and the job's record, which
 * viewer tokens read.
 */
export function redactUrlsIn(text: string): string {
  return (
    text
      .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s/?#"'<>]*@/gi, '$1***@')
      // a word holding '?' and something after it: a URL's query, whatever comes before it
      .replace(/[^\s"'<>()[\]{}]*\?[^\s"'<>()[\]{}]+/g, (word) => withoutQuery(word))
  );
}
