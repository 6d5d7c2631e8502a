/** `--attr key=value` of `device register` and `device update` (api-commands.ts, parseAttributes). */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseAttributes } from '../../src/cli/api-commands.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('the CLI: --attr', () => {
  it('types true/false and plainly written numbers, and keeps every other value as typed', () => {
    assert.deepEqual(
      { ...parseAttributes(['n=12', 'neg=-3', 'f=1.5', 'on=true', 'off=false', 'serial=00123', 'hex=0x1F', 'e=1e3', 'v=1.10', 'sp= 7', 'empty=', 'word=abc', 'eq=a=b']) },
      { n: 12, neg: -3, f: 1.5, on: true, off: false, serial: '00123', hex: '0x1F', e: '1e3', v: '1.10', sp: ' 7', empty: '', word: 'abc', eq: 'a=b' },
    );
  });

  it('refuses a pair without a key and a key given twice', () => {
    assert.throws(() => parseAttributes(['=x']), /--attr =x must look like key=value/);
    assert.throws(() => parseAttributes(['a=1', 'a=2']), /--attr a is given twice/);
  });

  it('sends __proto__ as a key like any other, not dropped', () => {
    const attrs = parseAttributes(['__proto__=x']);
    assert.equal(JSON.stringify(attrs), '{"__proto__":"x"}');
  });
});

describe('the CLI: --attr through the server', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  it('stores what the operator typed', async () => {
    const r = await runCli(['device', 'register', 'dev-a', '--attr', 'serial=00123', '--attr', 'v=1.10', '--attr', 'n=7', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((await ts.server.registry.get('dev-a')).attributes, { serial: '00123', v: '1.10', n: 7 });
    const proto = await runCli(['device', 'register', 'dev-b', '--attr', '__proto__=x', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(proto.code, 2, 'the server refuses the reserved name, in one line');
    assert.equal(proto.stderr.split('\n').length, 2, proto.stderr);
    assert.match(proto.stderr, /__proto__/);
  });
});
