/**
 * `broker mosquitto-config --secrets FILE`: a line that is not `deviceId secret` is refused by
 * file and line number (it was skipped, and its device left out of the password file without a
 * word), and a file that cannot be read is named (it was a bare ENOENT). No message shows a secret.
 */
import assert from 'node:assert/strict';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseSecrets } from '../../src/broker/mosquitto-config.ts';
import { runCli } from '../helpers/cli.ts';

describe('the --secrets file', () => {
  it('reads both forms, comments, blank lines and CRLF, and a device id holding a colon', () => {
    const secrets = parseSecrets('# old devices\n\ndev-1 s3cr3t-1\r\ndev-2:s3cr3t-2\ndev-3:  s3cr3t-3\nsite:a:dev-4 s3cr3t-4\n');
    assert.deepEqual([...secrets], [['dev-1', 's3cr3t-1'], ['dev-2', 's3cr3t-2'], ['dev-3', 's3cr3t-3'], ['site:a:dev-4', 's3cr3t-4']]);
  });

  it('refuses every bad line by number, all at once, without showing a secret', () => {
    const text = ['dev-1 good-secret', 'dev-2', 'dev-3 two words-secret', 'dev/4 hidden-secret', 'dev-5:', 'dev-1 other-secret'].join('\n');
    assert.throws(
      () => parseSecrets(text, '--secrets old.txt'),
      (err: any) => {
        assert.equal(err.status, 400);
        assert.equal(
          err.message,
          '--secrets old.txt: line 2: expected "deviceId secret" or "deviceId:secret", got 1 field; line 3: expected "deviceId secret" or "deviceId:secret", got 3 fields; ' +
            'line 4: "dev/4" is not a device id (1 to 128 characters of letters, digits, _ . : -, other than "." and ".."); line 5: no secret for dev-5; line 6: dev-1 is listed again (first on line 1)',
        );
        assert.ok(!/secret-|hidden|words/.test(err.message), 'no secret shown');
        return true;
      },
    );
    const many = Array.from({ length: 8 }, (_, i) => `lonely-${i}`).join('\n');
    assert.throws(() => parseSecrets(many, 'f'), /line 5: .*; and 3 more$/);
  });

  describe('through the command', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-secrets-'));
    });
    after(() => rm(dir, { recursive: true, force: true }));
    // the server named does not answer: the file is refused before anything is asked of it
    const run = (file: string) => runCli(['broker', 'mosquitto-config', '--out', path.join(dir, 'out'), '--secrets', file, '--server', 'http://127.0.0.1:9', '--token', 't']);

    it('names a missing file, exit code 2', async () => {
      const file = path.join(dir, 'nope.txt');
      const r = await run(file);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `updraft: error: --secrets ${file}: cannot read it (no such file)\n`);
    });

    it('names the file and the line of a bad one, exit code 2, and writes nothing', async () => {
      const file = path.join(dir, 'old.txt');
      await writeFile(file, 'dev-1 s3cr3t-1\ndev-2\n');
      const r = await run(file);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `updraft: error: --secrets ${file}: line 2: expected "deviceId secret" or "deviceId:secret", got 1 field\n`);
      await assert.rejects(access(path.join(dir, 'out')), 'nothing written');
    });
  });
});
