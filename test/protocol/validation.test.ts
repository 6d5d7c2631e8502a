import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS, parseSimpleRequest, parseUpdateRequest, salvageClientToken } from '../../src/protocol/shadow-messages.ts';
import { SEMVER, STORED_SEMVER, compareSemver, parseDesiredSoftware } from '../../src/protocol/software.ts';
import { parseCompatibility, satisfies } from '../../src/protocol/compatibility.ts';
import { answerTopic, parseCredentialsRequestTopic, parseRequestTopic } from '../../src/protocol/topics.ts';
import { mayPublish } from '../../src/broker/topic-acl.ts';

const bad = (payload: string, message: RegExp, code = 'BAD_REQUEST') => assert.throws(() => parseUpdateRequest(payload, DEFAULT_LIMITS), (e: any) => e.code === code && message.test(e.message));

describe('request validation', () => {
  it('names each problem', () => {
    bad('{not json', /^Invalid JSON$/);
    bad('[1,2]', /must be a JSON object/);
    bad('{}', /^Missing required node: state$/);
    bad('{"state": 5}', /^State node must be an object$/);
    bad('{"state": {}}', /must contain desired or reported/);
    bad('{"state": {"desired": [1]}}', /^Desired node must be an object$/);
    bad('{"state": {"reported": "x"}}', /^Reported node must be an object$/);
    bad('{"state": {"desired": {}}, "version": "3"}', /^Invalid version/);
    bad('{"state": {"desired": {}}, "version": -1}', /^Invalid version/);
    bad('{"state": {"desired": {}}, "clientToken": 12}', /^Invalid clientToken/);
    bad(`{"state": {"desired": {}}, "clientToken": "${'x'.repeat(65)}"}`, /^Invalid clientToken/);
    bad('{"state": {"desired": {"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}', /too many levels of nesting; maximum is 6/);
    // arrays are levels too: objects inside them, or arrays thousands deep, are no way around it
    bad('{"state": {"reported": {"a":[[[{"x":{"y":{"z":1}}}]]]}}}', /too many levels of nesting; maximum is 6/);
    bad(JSON.stringify({ state: { reported: { a: JSON.parse('['.repeat(3000) + ']'.repeat(3000)) } } }), /too many levels of nesting; maximum is 6/);
    assert.doesNotThrow(() => parseUpdateRequest('{"state": {"reported": {"a":[{"x":{"y":{"z":1}}}]}}}', DEFAULT_LIMITS), 'six levels, an array among them');
    bad(JSON.stringify({ state: { desired: { a: 'x'.repeat(9000) } } }), /maximum size/, 'TOO_LARGE');
    // a node the request does not take is refused by name, never dropped
    bad('{"state": {"desired": {"a": 1}, "reportd": {"a": 1}}}', /^State contains an invalid node: 'reportd'$/);
    bad('{"state": {"reported": {"x": 1}}, "versoin": 1}', /^Request contains an invalid node: 'versoin' \(an update takes state, clientToken, version\)$/);
  });

  it('counts a clientToken in characters (code points), as docs/protocol.md says: 64 emoji are taken, 65 are not', () => {
    const update = (token: string) => parseUpdateRequest(JSON.stringify({ state: { reported: { a: 1 } }, clientToken: token }), DEFAULT_LIMITS);
    for (const token of ['😀'.repeat(33), '😀'.repeat(64), 'é'.repeat(64), 'x'.repeat(64), `${'a'.repeat(63)}😀`]) {
      assert.equal(update(token).clientToken, token, `${[...token].length} characters, ${token.length} UTF-16 units`);
      assert.equal(parseSimpleRequest(JSON.stringify({ clientToken: token }), DEFAULT_LIMITS).clientToken, token);
      // echoed on the rejection of a request refused for something else
      assert.equal(salvageClientToken(JSON.stringify({ state: 5, clientToken: token })), token);
    }
    for (const token of ['😀'.repeat(65), 'x'.repeat(65), `${'a'.repeat(64)}😀`, '😀'.repeat(1000), '']) {
      assert.throws(() => update(token), /^UpdraftError: Invalid clientToken: must be a string of 1 to 64 characters$/, `${[...token].length} characters`);
    }
    assert.equal(salvageClientToken(JSON.stringify({ state: 5, clientToken: '😀'.repeat(65) })), undefined);
    assert.equal(salvageClientToken(JSON.stringify({ state: 5, clientToken: '' })), undefined, 'an empty token is not echoed');
  });

  it("takes thingName and shadowName only naming the topic's own, in updates, gets and deletes", () => {
    const named = { deviceId: 'dev-1', name: 'cfg' };
    assert.deepEqual(parseUpdateRequest('{"state": {"reported": {"x": 1}}, "thingName": "dev-1", "shadowName": "cfg"}', DEFAULT_LIMITS, named), { state: { reported: { x: 1 } } });
    assert.deepEqual(parseSimpleRequest('{"thingName": "dev-1", "shadowName": "cfg", "clientToken": "t"}', DEFAULT_LIMITS, named, 'delete'), { clientToken: 't' });
    assert.throws(() => parseUpdateRequest('{"state": {"reported": {"x": 1}}, "thingName": "dev-2"}', DEFAULT_LIMITS, named), /^UpdraftError: thingName "dev-2" does not match the topic's thing 'dev-1'/);
    assert.throws(() => parseSimpleRequest('{"shadowName": "cfg"}', DEFAULT_LIMITS, { deviceId: 'dev-1', name: '' }), /does not match no named shadow/);
    // without the topic's shadow to compare with, they are nodes like any other
    assert.throws(() => parseSimpleRequest('{"thingName": "dev-1"}', DEFAULT_LIMITS), /invalid node: 'thingName' \(a get takes clientToken, version\)/);
  });

  it('refuses nesting of any depth the size limit lets through with 400, walking it without recursion', () => {
    // the limit at its most (shadow.maxDocumentBytes 1 MiB): half a million levels of brackets,
    // which JSON.parse builds without recursion; a recursive depth check overflowed the stack
    // from about 10,000 levels (QA: 500 "Maximum call stack size exceeded" at 65536 bytes)
    const limits = { maxDocumentBytes: 1 << 20, maxDepth: 6 };
    const arrays = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const objects = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
    for (const deep of [arrays(15_000), arrays(500_000), objects(15_000), objects(150_000)]) {
      const payload = `{"state":{"reported":{"a":${deep}}}}`;
      assert.ok(payload.length <= limits.maxDocumentBytes);
      assert.throws(() => parseUpdateRequest(payload, limits), (e: any) => e.code === 'BAD_REQUEST' && /too many levels of nesting; maximum is 6/.test(e.message), `${payload.length} bytes`);
    }
  });

  it('refuses a number beyond the double range, naming it: JSON.parse makes it Infinity, which would be stored as null', () => {
    bad('{"state":{"reported":{"big":1e999}}}', /^state\.reported\.big is not a finite number/);
    bad('{"state":{"desired":{"cfg":{"list":[1,{"low":-1e400}]}}}}', /^state\.desired\.cfg\.list\[1\]\.low is not a finite number/);
    bad(`{"state":{"reported":{"n":1${'0'.repeat(400)}}}}`, /^state\.reported\.n is not a finite number/);
    assert.doesNotThrow(() => parseUpdateRequest('{"state":{"reported":{"max":1.7976931348623157e308,"tiny":1e-400,"nz":-0}}}', DEFAULT_LIMITS), 'the largest double, and an underflow to 0');
  });

  it('refuses bytes that are not UTF-8 (RFC 8259 section 8.1) instead of storing U+FFFD in their place', () => {
    const payload = Buffer.concat([Buffer.from('{"state":{"reported":{"u":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}},"clientToken":"utf"}')]);
    assert.throws(() => parseUpdateRequest(payload, DEFAULT_LIMITS), (e: any) => e.code === 'BAD_REQUEST' && /^Invalid JSON: the payload is not UTF-8/.test(e.message));
    assert.throws(() => parseSimpleRequest(Buffer.from([0x7b, 0x22, 0xc3, 0x22, 0x3a, 0x31, 0x7d]), DEFAULT_LIMITS), /not UTF-8/, 'a get or delete too');
    // a surrogate encoded in UTF-8 (CESU), and an overlong '/': not UTF-8 either
    for (const bad of [[0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
      const p = Buffer.concat([Buffer.from('{"state":{"reported":{"u":"'), Buffer.from(bad), Buffer.from('"}}}')]);
      assert.throws(() => parseUpdateRequest(p, DEFAULT_LIMITS), /not UTF-8/);
    }
    const fine = parseUpdateRequest(Buffer.from('{"state":{"reported":{"s":"héllo 😀"}}}'), DEFAULT_LIMITS);
    assert.equal(fine.state.reported?.s, 'héllo 😀');
  });

  it('accepts a well-formed request and keeps nulls', () => {
    const r = parseUpdateRequest('{"state":{"desired":null,"reported":{"a":1}},"version":3,"clientToken":"t"}', DEFAULT_LIMITS);
    assert.deepEqual(r, { state: { desired: null, reported: { a: 1 } }, version: 3, clientToken: 't' });
    assert.deepEqual(parseSimpleRequest(Buffer.alloc(0), DEFAULT_LIMITS), {});
  });

  it('validates the desired software section', () => {
    const ok = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 10, jobId: 'j1' };
    assert.deepEqual(parseDesiredSoftware(ok), ok);
    assert.throws(() => parseDesiredSoftware({ ...ok, version: 'two' }), /semantic version/);
    assert.throws(() => parseDesiredSoftware({ ...ok, sha256: 'xyz' }), /sha256/);
    assert.throws(() => parseDesiredSoftware({ ...ok, size: -1 }), /size/);
    assert.throws(() => parseDesiredSoftware({ ...ok, jobId: 5 }), /jobId must be a string/);
  });

  it('takes semantic versions as semver 2.0.0 spells them (§9, §10)', () => {
    for (const v of ['0.0.0', '1.2.3', '1.0.0-0', '1.0.0-rc.1', '1.0.0-0a', '1.0.0-a-b.c', '1.0.0-x.7.z.92', '1.0.0+001', '1.0.0-alpha+exp.sha.5114f85', '1.0.0---']) {
      assert.ok(SEMVER.test(v), v);
    }
    // leading zeros in a numeric prerelease identifier, empty identifiers, and the core's own rules
    for (const v of ['1.0.0-01', '1.0.0-rc.01', '1.0.0-00', '1.0.0-', '1.0.0-rc..1', '1.0.0-rc.', '1.0.0+', '1.0.0+a..b', '01.0.0', '1.0', '1.0.0-rc_1', 'v1.0.0']) {
      assert.equal(SEMVER.test(v), false, v);
    }
  });

  it('reads versions stored before SEMVER followed §9 (requires of a signed manifest, a device that runs one); new ones are held to it', () => {
    assert.throws(() => parseCompatibility({ requires: '>=1.0.0-rc.01' }), /in requires is not an operator .* and a semantic version/);
    assert.deepEqual(parseCompatibility({ requires: '>=1.0.0-rc.01' }, STORED_SEMVER), { requires: '>=1.0.0-rc.01' });
    assert.equal(satisfies('1.0.0-rc.02', '>=1.0.0-rc.01'), true);
    assert.equal(compareSemver('1.0.0-rc.01', '1.0.0-rc.1'), -1);
  });

  it('orders semantic versions by precedence', () => {
    assert.ok(compareSemver('2.0.0', '10.0.0') < 0);
    assert.ok(compareSemver('1.0.0-alpha', '1.0.0') < 0);
    assert.ok(compareSemver('1.0.0-alpha.2', '1.0.0-alpha.10') < 0);
    assert.equal(compareSemver('1.2.3+build', '1.2.3'), 0);
  });

  it('orders numeric parts as digit strings (semver §11), never through Number()', () => {
    // past 2^53 Number() reads both as 9007199254740992: they were equal
    assert.equal(compareSemver('9007199254740993.0.0', '9007199254740992.0.0'), 1);
    assert.equal(compareSemver('1.9007199254740992.0', '1.9007199254740993.0'), -1);
    assert.equal(compareSemver('1.0.9007199254740993', '1.0.9007199254740993'), 0);
    // past 1e308 both were Infinity, and Infinity - Infinity is NaN (neither <, > nor = 0)
    const huge = '1' + '0'.repeat(400);
    assert.equal(compareSemver(`${huge}.0.0`, `2${huge.slice(1)}.0.0`), -1);
    assert.equal(compareSemver(`1.${huge}.0`, `1.${huge}.0`), 0);
    assert.equal(compareSemver(`0.0.${huge}`, '0.0.1'), 1);
    // numeric prerelease identifiers likewise; numeric ones precede alphanumeric ones (1e3 is text)
    assert.equal(compareSemver('1.0.0-rc.18446744073709551617', '1.0.0-rc.18446744073709551616'), 1);
    assert.equal(compareSemver(`1.0.0-${huge}`, `1.0.0-9${huge.slice(2)}`), 1);
    assert.equal(compareSemver('1.0.0-1000', '1.0.0-1e3'), -1);
    assert.equal(compareSemver('1.0.0-999', '1.0.0-1000'), -1);
    // the sign only: callers compare with 0
    assert.equal(compareSemver('10.0.0', '2.0.0'), 1);
    assert.equal(compareSemver('1.0.0-alpha.2', '1.0.0-alpha.10'), -1);
  });

  it('parses request topics and ignores everything else', () => {
    assert.deepEqual(parseRequestTopic('state/dev-1/update'), { deviceId: 'dev-1', name: '', op: 'update' });
    assert.deepEqual(parseRequestTopic('state/dev-1/shadow/cfg/get'), { deviceId: 'dev-1', name: 'cfg', op: 'get' });
    assert.equal(parseRequestTopic('state/dev-1/update/accepted'), undefined);
    assert.equal(parseRequestTopic('state/+/update'), undefined);
    assert.equal(parseRequestTopic('other/dev-1/update'), undefined);
    assert.equal(parseRequestTopic('state/update'), undefined);
    assert.equal(parseRequestTopic('state/dev-1/get/accepted'), undefined);
    assert.deepEqual(parseRequestTopic('state/dev-1/shadow/update/delete'), { deviceId: 'dev-1', name: 'update', op: 'delete' });
    assert.equal(parseRequestTopic('state/dev-1/shadow/cfg/update/delta'), undefined);
    assert.equal(parseRequestTopic('state/dev-1/extra/update'), undefined);
    // a name breaking the rule is a request, refused with a 400 on its own topics; one no
    // client can publish (wildcards) is none, and the device id level is never lenient
    assert.deepEqual(parseRequestTopic('state/dev-1/shadow/bad name/update'), { deviceId: 'dev-1', name: 'bad name', op: 'update', nameProblem: 'Invalid shadow name: it holds " "; a shadow name is 1 to 128 characters of letters, digits, _ . : -, other than "." and ".."' });
    assert.equal(parseRequestTopic('state/dev-1/shadow//get')?.nameProblem, 'Invalid shadow name: it is empty; a shadow name is 1 to 128 characters of letters, digits, _ . : -, other than "." and ".."');
    assert.match(parseRequestTopic(`state/dev-1/shadow/${'n'.repeat(129)}/get`)?.nameProblem ?? '', /^Invalid shadow name: it has 129 characters/);
    assert.equal(parseRequestTopic('state/dev-1/shadow/+/update'), undefined);
    assert.equal(parseRequestTopic('state/dev 1/shadow/bad name/update'), undefined);
    assert.equal(answerTopic(parseRequestTopic('state/dev-1/shadow//update')!, 'update', 'rejected'), 'state/dev-1/shadow//update/rejected', 'an empty name is no classic shadow');
    // the topic ACL: a device may publish such a request on its own topics only
    assert.equal(mayPublish({ kind: 'device', id: 'dev-1' }, 'state/dev-1/shadow/bad name/update'), true);
    assert.equal(mayPublish({ kind: 'device', id: 'dev-2' }, 'state/dev-1/shadow/bad name/update'), false);
    assert.equal(mayPublish({ kind: 'device', id: 'dev-2' }, '$aws/things/dev-1/shadow/name/bad name/update'), false);
    assert.deepEqual(parseCredentialsRequestTopic('state/dev-1/credentials/request'), { deviceId: 'dev-1' });
    assert.equal(parseCredentialsRequestTopic('state/dev-1/credentials/request/accepted'), undefined);
    assert.equal(parseCredentialsRequestTopic('state/dev-1/x/credentials/request'), undefined);
    assert.equal(parseCredentialsRequestTopic('state/+/credentials/request'), undefined);
  });
});
