/**
 * A URL fit to print or log: the password of its user info, and any query parameter whose
 * name holds "pass" (node-postgres takes `?password=` and `?sslpassword=`), as "***". Works
 * on text that is not a valid URL too: it only replaces.
 */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@').replace(/([?&][^=&#]*pass[^=&#]*=)[^&#]*/gi, '$1***');
}
