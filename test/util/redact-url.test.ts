import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactUrl } from '../../src/util/redact-url.ts';

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
