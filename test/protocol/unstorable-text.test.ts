/**
 * Text no store keeps (src/protocol/json.ts): U+0000 and an unpaired surrogate, in a string or
 * a key anywhere in a document, refused by `requireJsonObject` naming where; a surrogate pair
 * (an emoji) is a character like any other. SQLite stored them and PostgreSQL refused them in
 * its own words (or with a 500), so every document is checked at the edge, the same on both.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { requireJsonObject, unstorableChar, unstorableString, type JsonTextMessages, type JsonValue } from '../../src/protocol/json.ts';
import { DEFAULT_LIMITS, parseSimpleRequest, parseUpdateRequest, salvageClientToken } from '../../src/protocol/shadow-messages.ts';

const MESSAGES: JsonTextMessages = { 'not-utf8': 'not utf8', 'not-json': 'not json', 'not-object': 'not object' };
const NUL = 'holds a NUL character (U+0000), which cannot be stored';

/** The message `requireJsonObject` refuses `text` with (as bytes, and as a string), or undefined. */
function refusal(text: string): string | undefined {
  const messages = [Buffer.from(text), text].map((payload) => {
    try {
      requireJsonObject(payload, MESSAGES);
      return undefined;
    } catch (err) {
      assert.ok(err instanceof UpdraftError && err.code === 'BAD_REQUEST', String(err));
      return err.message;
    }
  });
  assert.equal(messages[0], messages[1], `bytes and string alike: ${text}`);
  return messages[0];
}

describe('unstorableChar', () => {
  it('names U+0000 and an unpaired surrogate, and nothing else', () => {
    assert.equal(unstorableChar('a\u0000b'), 'a NUL character (U+0000)');
    assert.equal(unstorableChar('\ud800'), 'an unpaired surrogate (U+D800)');
    assert.equal(unstorableChar('x\udbff'), 'an unpaired surrogate (U+DBFF)', 'a high one at the end');
    assert.equal(unstorableChar('\udc00x'), 'an unpaired surrogate (U+DC00)', 'a low one first');
    assert.equal(unstorableChar('\ud83d\ude00\ude00'), 'an unpaired surrogate (U+DE00)', 'a low one after a pair');
    assert.equal(unstorableChar('\ud800\ud800\udc00'), 'an unpaired surrogate (U+D800)', 'a high one before a pair');
    for (const ok of ['', 'plain', 'Zürich', '\ud83d\ude00', 'a\ud800\udc00b', '\u0001\u001f\ufffd\uffff', '\\u0000']) {
      assert.equal(unstorableChar(ok), undefined, JSON.stringify(ok));
    }
  });
});

describe('requireJsonObject and text no store keeps', () => {
  it('refuses a string value holding one, naming its path through objects and arrays', () => {
    assert.equal(refusal('{"state":{"reported":{"x":"\\ud800x"}}}'), 'state.reported.x holds an unpaired surrogate (U+D800), which cannot be stored');
    assert.equal(refusal('{"state":{"reported":{"x":"a\\u0000b"}}}'), `state.reported.x ${NUL}`);
    assert.equal(refusal('{"targets":{"query":"tags.a = \\uDFFF"}}'), 'targets.query holds an unpaired surrogate (U+DFFF), which cannot be stored', 'upper-case escape');
    assert.equal(refusal('{"a":{"list":[1,[true,"\\u0000"]]}}'), `a.list[1][1] ${NUL}`);
    assert.equal(refusal('{"devices":[{"deviceId":"d"},{"attributes":{"s":"\\udc00"}}]}'), 'devices[1].attributes.s holds an unpaired surrogate (U+DC00), which cannot be stored');
    assert.equal(refusal('{"clientToken":"\\u0000"}'), `clientToken ${NUL}`);
  });

  it('refuses a key holding one, escaped in the message', () => {
    assert.equal(refusal('{"a\\u0000":1}'), `the key "a\\u0000" at the top level ${NUL}`);
    assert.equal(refusal('{"state":{"reported":{"k\\ud800":{"x":1}}}}'), 'the key "k\\ud800" in state.reported holds an unpaired surrogate (U+D800), which cannot be stored');
    assert.equal(refusal('{"l":[{"\\u0000":"v"}]}'), `the key "\\u0000" in l[0] ${NUL}`);
  });

  it('takes a surrogate pair, escaped or as it is, an escaped backslash before u0000, and the other control characters', () => {
    for (const ok of ['{"mood":"\\ud83d\\ude00"}', '{"mood":"😀","😀":["😀"]}', '{"path":"C:\\\\u0000"}', '{"s":"\\\\ud800"}', '{"c":"\\u0001\\u001f\\ufffd"}', '{}']) {
      assert.equal(refusal(ok), undefined, ok);
    }
    assert.deepEqual(requireJsonObject(Buffer.from('{"mood":"\\ud83d\\ude00"}'), MESSAGES), { mood: '😀' });
  });

  it('refuses a string payload holding a lone surrogate as it is (not escaped)', () => {
    assert.throws(() => requireJsonObject('{"x":"a\ud800"}', MESSAGES), { code: 'BAD_REQUEST', message: 'x holds an unpaired surrogate (U+D800), which cannot be stored' });
    assert.deepEqual(requireJsonObject('{"x":"a\ud800\udc00"}', MESSAGES), { x: 'a\ud800\udc00' });
  });

  it('keeps its other answers first: not UTF-8, not JSON, not an object', () => {
    assert.equal(refusal('{"x":"\\u0000"'), 'not json');
    assert.equal(refusal('["\\u0000"]'), 'not object');
    assert.throws(() => requireJsonObject(Buffer.from([0x7b, 0xff, 0x7d]), MESSAGES), { message: 'not utf8' });
  });

  it('finds one at the bottom of half a million levels without overflowing the stack', () => {
    const n = 500_000;
    const text = '{"a":' + '['.repeat(n) + '"\\u0000"' + ']'.repeat(n) + '}';
    assert.equal(refusal(text), `a${'[0]'.repeat(n)} ${NUL}`);
    assert.equal(unstorableString(JSON.parse('{"a":'.repeat(n) + '"\\ud800"' + '}'.repeat(n)) as JsonValue, 'r'), `r${'.a'.repeat(n)} holds an unpaired surrogate (U+D800), which cannot be stored`);
  });

  it("is the shadow's and the device requests' check: a rejection still echoes the clientToken", () => {
    assert.throws(() => parseUpdateRequest('{"state":{"reported":{"x":"\\ud800x"}},"clientToken":"t1"}', DEFAULT_LIMITS), { code: 'BAD_REQUEST', message: 'state.reported.x holds an unpaired surrogate (U+D800), which cannot be stored' });
    assert.throws(() => parseUpdateRequest(Buffer.from('{"state":{"desired":{"x":"a\\u0000b"}}}'), DEFAULT_LIMITS), { message: `state.desired.x ${NUL}` });
    assert.throws(() => parseSimpleRequest('{"clientToken":"\\u0000"}', DEFAULT_LIMITS), { message: `clientToken ${NUL}` });
    assert.equal(salvageClientToken('{"state":{"reported":{"x":"\\ud800x"}},"clientToken":"t1"}'), 't1');
  });
});
