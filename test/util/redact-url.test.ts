import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactUrl, redactUrlsIn, safeUrl } from '../../src/util/redact-url.ts';

test('redactUrl hides the whole password of the user info, whatever it holds', () => {
  assert.equal(redactUrl('postgres://app:secret@db:5432/updraft'), 'postgres://app:***@db:5432/updraft');
  // '@' in the password: node-postgres (WHATWG URL) takes everything up to the authority's last '@'
  const url = 'postgres://app:Tr0ub4dor@3xyzSECRET@127.0.0.1:1/db';
  assert.equal(new URL(url).password, 'Tr0ub4dor%403xyzSECRET', 'the password as the URL parser reads it');
  assert.equal(redactUrl(url), 'postgres://app:***@127.0.0.1:1/db');
  assert.equal(redactUrl('postgres://app:a@b@c@host'), 'postgres://app:***@host');
  // '@' in the user name: the password after its ':' is still hidden
  assert.equal(new URL('postgres://a@b:Secret@host/db').password, 'Secret');
  assert.equal(redactUrl('postgres://a@b:Secret@host/db'), 'postgres://a@b:***@host/db');
  assert.equal(redactUrl('postgres://user@host:5432/db'), 'postgres://user@host:5432/db', 'no password: nothing to hide');
  // '/', '?' or '#' in the password: a URL parser ends the authority inside it (the first two
  // do not parse; the third parses as host u, port 123, path /ss@host/db), so the user info is
  // taken to end at the last '@', and an '@' after the authority (a query's) hides more, never less
  assert.equal(redactUrl('postgres://u:pa/ss@host/db'), 'postgres://u:***@host/db');
  assert.equal(redactUrl('mqtt://operator:tok/en?#x@host:1883'), 'mqtt://operator:***@host:1883');
  assert.equal(redactUrl('postgres://u:123/ss@host/db'), 'postgres://u:***@host/db');
  assert.equal(redactUrl('u:pa/ss@host/db'), 'u:***@host/db', 'no scheme: hidden from the start');
  assert.equal(redactUrl('postgres://app:pw@host/db?application_name=a@b'), 'postgres://app:***@b');
  assert.equal(redactUrl('postgres://host:5432/db?user=a@b'), 'postgres://host:***@b');
  assert.equal(redactUrl('s3://fw?endpoint=http://minio:9000'), 's3://fw?endpoint=http://minio:9000', 'no user info: nothing to hide');
  assert.equal(redactUrl('postgres://app@host/db?password=pw&sslpassword=x'), 'postgres://app@host/db?password=***&sslpassword=***');
});

test('redactUrlsIn hides the query of URLs only: a question mark in other text stays', () => {
  // an installer's or a health check's reason is passed through it whole (the job's FAILURE reason)
  assert.equal(redactUrlsIn('installer: foo?bar'), 'installer: foo?bar');
  assert.equal(redactUrlsIn('exit code 3: is the slot mounted?yes, read-only?!'), 'exit code 3: is the slot mounted?yes, read-only?!');
  assert.equal(redactUrlsIn('which one (a?b) did you mean'), 'which one (a?b) did you mean');
  // URLs with a scheme, wherever they are in a word
  assert.equal(redactUrlsIn('GET https://cdn.example.com/fw?opaque failed'), 'GET https://cdn.example.com/fw?<redacted> failed');
  assert.equal(redactUrlsIn('url=http://h:8080/v1/download/fw/2.0.0?device=d&sig=S3cr3t'), 'url=http://h:8080/v1/download/fw/2.0.0?<redacted>');
  // a URL fetch could not parse has no scheme; its query (name=value, as every signed URL's) still goes
  assert.equal(redactUrlsIn('Failed to parse URL from notaurl/v1/download/fw?device=d&exp=1&sig=S3cr3t'), 'Failed to parse URL from notaurl/v1/download/fw?<redacted>');
  assert.equal(redactUrlsIn('fw?X-Amz-Signature=abc'), 'fw?<redacted>');
  // user info up to the word's last '@', as redactUrl
  assert.equal(redactUrlsIn('connect postgres://u:pa/ss@db/x failed'), 'connect postgres://***@db/x failed');
});

test('safeUrl hides the password and the query, a password holding / too', () => {
  assert.equal(safeUrl('mqtts://dev-1:s3cret@broker:8883'), 'mqtts://dev-1:***@broker:8883');
  // a URL parser reads this as host u, port 123, path /ss@host: there was no password to hide, and the line showed it
  assert.equal(safeUrl('mqtt://u:123/ss@host:1883'), 'mqtt://u:***@host:1883');
  assert.equal(safeUrl('https://updraft.example/api?token=abc'), 'https://updraft.example/api?<redacted>');
  assert.equal(safeUrl('http://127.0.0.1:8080'), 'http://127.0.0.1:8080');
});

test("the server's start-up line names an external broker by its host, never a piece of its password", async () => {
  const { brokerLine } = await import('../../src/cli/server-command.ts');
  const line = brokerLine({ mqtt: { url: 'mqtt://operator:123/en@broker.example:1883', shareGroup: 'updraft' } as never }, undefined);
  assert.equal(line, 'updraft: MQTT via external broker broker.example:1883 (shared subscriptions, group updraft)\n');
  assert.doesNotMatch(line, /123|en@/);
});

/** The regexes redactUrlsIn used to run (quadratic on a long word), as the reference of what it replaces. */
function regexRedaction(text: string): string {
  const startsQuery = (word: string) => {
    const q = word.indexOf('?');
    return word.slice(0, q).includes('://') || /^[^=&#]+=/.test(word.slice(q + 1));
  };
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s"'<>]*@/gi, '$1***@')
    .replace(/[^\s"'<>()[\]{}]*\?[^\s"'<>()[\]{}]+/g, (word) => {
      if (!startsQuery(word)) return word;
      const q = word.indexOf('?');
      return word.slice(0, q) + '?<redacted>';
    });
}

test('redactUrlsIn replaces what the two regexes did, on texts made of the characters that matter to them', () => {
  // a deterministic generator: each text mixes scheme characters, '://', '@', '?', '=', '&', '#', quotes, brackets, spaces
  const pieces = ['a', 'Z', '1', '+', '.', '-', ':', '/', '://', '@', '?', '=', '&', '#', ' ', '\t', '"', "'", '<', '>', '(', ')', '[', ']', '{', '}', 'http://', 'u:p@', '?sig=', 'x'];
  let x = 7;
  const next = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x >>> 8);
  for (let n = 0; n < 20_000; n++) {
    let text = '';
    const len = next() % 24;
    for (let i = 0; i < len; i++) text += pieces[next() % pieces.length];
    assert.equal(redactUrlsIn(text), regexRedaction(text), JSON.stringify(text));
  }
  for (const text of ['1http://u:p@h', 'x://a://b@c d@e', 'ab://c@d@e f', '://u@h', '9://u@h', 'HTTP://U:P@H/A?B=C', 'a?', 'a??', '?a', 'a?b?', 'http://h/p?x (y?z=1)']) {
    assert.equal(redactUrlsIn(text), regexRedaction(text), text);
  }
});

test('redactUrlsIn reads a text of a million characters in one pass (another process, with a hang guard of minutes: the regexes took hours)', async () => {
  const { execFile } = await import('node:child_process');
  const source = `
    import { redactUrlsIn } from ${JSON.stringify(new URL('../../src/util/redact-url.ts', import.meta.url).href)};
    const n = 1_000_000;
    console.log(JSON.stringify([
      redactUrlsIn('x'.repeat(n)) === 'x'.repeat(n),
      redactUrlsIn('a'.repeat(n) + ':/') === 'a'.repeat(n) + ':/',
      redactUrlsIn('Failed to parse URL from http://' + 'a'.repeat(n)) === 'Failed to parse URL from http://' + 'a'.repeat(n),
      redactUrlsIn('http://u:p@' + 'a'.repeat(n) + '?sig=S3cr3t') === 'http://***@' + 'a'.repeat(n) + '?<redacted>',
      redactUrlsIn('a://'.repeat(n / 4)) === 'a://'.repeat(n / 4),
      redactUrlsIn('a?'.repeat(n / 2)) === 'a?'.repeat(n / 2),
    ]));`;
  // the timeout only guards against a hang (the regexes: about 44 s for 100,000 characters, a hundred times that here)
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], { timeout: 300_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  assert.deepEqual(JSON.parse(out), [true, true, true, true, true, true]);
});
