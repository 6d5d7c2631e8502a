import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactUrl, redactUrlsIn } from '../../src/util/redact-url.ts';

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
  // an '@' after the authority (a query) is not the user info's
  assert.equal(redactUrl('postgres://app:pw@host/db?application_name=a@b'), 'postgres://app:***@host/db?application_name=a@b');
  assert.equal(redactUrl('postgres://host:5432/db?user=a@b'), 'postgres://host:5432/db?user=a@b');
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
});
