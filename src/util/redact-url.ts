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
  return queriesRedacted(userInfoRedacted(text));
}

/**
 * A text cut to `max` characters, saying how long it was: for a URL or a message quoting one,
 * redacted first, before a log line or a reason carries it (a command's URL may be 100,000
 * characters of nothing).
 */
export function clipped(text: string, max = 500): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters)`;
}

/** Ends a word of `userInfoRedacted` (whitespace, quotes, angle brackets). */
const USER_INFO_END = /[\s"'<>]/;
/** Ends a word of `queriesRedacted` (those, and brackets). */
const QUERY_WORD_END = /[\s"'<>()[\]{}]/;
const SCHEME_CHAR = /[a-z0-9+.-]/i;
const LETTER = /[a-z]/i;

/**
 * `scheme://` and what follows it up to its word's last '@' as `scheme://***@` (a password may
 * hold '/', '?' or '#', as in redactUrl). What the regex `([a-z][a-z0-9+.-]*:\/\/)[^\s"'<>]*@`
 * (gi) replaced, in one pass over the text: that regex tried every position, and from each
 * read to the word's end, time growing with the square of a long word (a 100,000-character
 * URL took 44 s, the agent blocked meanwhile). Here each '://' is found once, its scheme read
 * backwards over scheme characters (the leftmost letter starts it, as the regex's leftmost
 * match), and a word's end and last '@' are found once per word.
 */
function userInfoRedacted(text: string): string {
  let out = '';
  let copied = 0; // text before this is in out
  let wordEnd = -1; // the end of the word last measured, and its last '@'
  let lastAt = -1;
  for (let i = text.indexOf('://'); i !== -1; i = text.indexOf('://', i + 1)) {
    let first = -1; // the scheme's first character: the leftmost letter of the scheme characters before '://'
    for (let p = i - 1; p >= copied && SCHEME_CHAR.test(text[p]!); p--) if (LETTER.test(text[p]!)) first = p;
    if (first === -1) continue;
    if (i + 3 > wordEnd) {
      wordEnd = i + 3;
      lastAt = -1;
      while (wordEnd < text.length && !USER_INFO_END.test(text[wordEnd]!)) {
        if (text[wordEnd] === '@') lastAt = wordEnd;
        wordEnd++;
      }
    }
    if (lastAt < i + 3) continue;
    out += `${text.slice(copied, i + 3)}***@`;
    copied = lastAt + 1;
    i = lastAt; // the regex went on after its match
  }
  return out + text.slice(copied);
}

/**
 * Each word (up to whitespace, quotes, angle brackets or brackets) with a '?' that something
 * follows, when the '?' starts a URL's query (`startsQuery`), with its query as `?<redacted>`.
 * What the regex `[^\s"'<>()[\]{}]*\?[^\s"'<>()[\]{}]+` (g) matched is such a whole word;
 * that regex, from every position, read to the word's end and back (quadratic, as above).
 */
function queriesRedacted(text: string): string {
  let out = '';
  let start = 0;
  for (let i = 0; i <= text.length; i++) {
    if (i < text.length && !QUERY_WORD_END.test(text[i]!)) continue;
    const word = text.slice(start, i);
    const q = word.indexOf('?');
    out += q !== -1 && q < word.length - 1 && startsQuery(word) ? withoutQuery(word) : word;
    if (i < text.length) out += text[i];
    start = i + 1;
  }
  return out;
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
