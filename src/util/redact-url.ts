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
