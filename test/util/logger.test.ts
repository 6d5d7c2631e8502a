/**
 * The logger's two formats: text whose fields parse unambiguously (logfmt) and cannot be
 * split over lines by what they carry, and JSON lines for log pipelines; and the server
 * started with `--log-format json` writing its log that way.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { runCli, startCli } from '../helpers/cli.ts';

function capture(format?: 'text' | 'json', level: 'debug' | 'info' = 'info') {
  const lines: string[] = [];
  return { lines, log: createLogger({ level, ...(format ? { format } : {}), write: (l) => lines.push(l) }) };
}

describe('logger', () => {
  it('text: a line with no fields, or {}, ends with its message (no trailing space)', () => {
    const { lines, log } = capture();
    log.child('rollouts').warn('no fields');
    log.child('rollouts').warn('empty fields', {});
    assert.equal(lines.length, 2);
    for (const l of lines) assert.match(l, /\[rollouts\] (no fields|empty fields)$/, `no trailing space: ${JSON.stringify(l)}`);
  });

  it('text: quotes a value that has a space, quote, = or control character, or is empty; leaves plain ones as they are', () => {
    const { lines, log } = capture();
    log.child('download').warn('download refused', {
      device: 'dev-1',
      reason: 'URL expired at 2026-12-03T10:00:00.000Z',
      path: '/v1/download/fw/2.0.0?device=dev-1',
      quote: 'say "hi"',
      empty: '',
      forged: 'x\n2026-12-03T10:00:00.000Z INFO  [http] all is well',
      n: 3,
      ok: true,
      obj: { a: 'b c' },
      err: new Error('boom went it'),
    });
    assert.equal(lines.length, 1);
    const rest = lines[0]!.replace(/^\S+ WARN  \[download\] download refused /, '');
    assert.notEqual(rest, lines[0], lines[0]);
    assert.equal(
      rest,
      'device=dev-1 reason="URL expired at 2026-12-03T10:00:00.000Z" path="/v1/download/fw/2.0.0?device=dev-1" quote="say \\"hi\\"" empty="" ' +
        'forged="x\\n2026-12-03T10:00:00.000Z INFO  [http] all is well" n=3 ok=true obj="{\\"a\\":\\"b c\\"}" err="boom went it"',
    );
  });

  it('text: a message carrying a line break stays on one line', () => {
    const { lines, log } = capture();
    log.error('cannot start: first\nsecond\r\nthird');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /ERROR cannot start: first\\nsecond\\nthird$/);
  });

  it('json: one object per line with time, level, component, message and the fields; a field named like one of those is kept as _name', () => {
    const { lines, log } = capture('json', 'debug');
    log.child('http').info('operator request', { method: 'POST', status: 201, msg: 'mine', level: 'x' });
    log.debug('no component', { err: new Error('boom') });
    const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 2);
    assert.match(String(a!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual({ ...a, time: 't' }, { time: 't', level: 'info', component: 'http', msg: 'operator request', method: 'POST', status: 201, _msg: 'mine', _level: 'x' });
    assert.deepEqual({ ...b, time: 't' }, { time: 't', level: 'debug', msg: 'no component', err: 'boom' });
  });

  it('keeps to the level in both formats', () => {
    for (const format of ['text', 'json'] as const) {
      const { lines, log } = capture(format, 'info');
      log.debug('hidden');
      log.info('shown');
      assert.equal(lines.length, 1, format);
      assert.ok(lines[0]!.includes('shown'));
    }
  });

  it('the server writes JSON lines with --log-format json, and refuses a format it does not know', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-logfmt-'));
    try {
      const bad = await runCli(['server', '--data-dir', dataDir, '--log-format', 'yaml']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /^updraft: error: .*log-format.*text, json/m);
      const server = startCli(['server', '--data-dir', dataDir, '--log-format', 'json', '--log-level', 'debug', '--mqtt-port', '0', '--mqtt-tls-port', '0', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1']);
      try {
        await server.waitFor(/updraft: data in /);
        const logged = server
          .output()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { level: string; msg: string });
        assert.ok(logged.length > 0, server.output());
        assert.ok(logged.some((l) => l.level === 'debug' && l.msg === 'software signing key created; provision devices with its public key'), server.output());
        // nothing else the server logs is in the text format
        assert.deepEqual(server.output().split('\n').filter((l) => /^\d{4}-\d\d-\d\dT/.test(l)), []);
      } finally {
        await server.kill();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
