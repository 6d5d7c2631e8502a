/**
 * The CLI refuses "." and ".." as an id or name it puts in a URL path, exit 2 before any
 * request, in the server's words (pathSegment in src/cli/path-segment.ts): encodeURIComponent
 * leaves dots, and a URL resolves such a segment away, so QA saw `device show .` print
 * "Cannot read properties of undefined", `job log <id> ..` "Invalid time value",
 * `device delete ..` "no route for DELETE /api/v1/" and `job cancel ..` "no route for POST
 * /api/v1/cancel". Real server behind a TCP relay that counts the connections made to it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

describe('"." and ".." in a CLI path', () => {
  let ts: TestServer;
  let relay: TcpRelay;
  const cli = (...args: string[]) => runCli([...args, '--server', `http://127.0.0.1:${relay.port}`, '--token', ts.token]);

  before(async () => {
    ts = await startTestServer();
    relay = await startRelay({ host: '127.0.0.1', port: Number(new URL(ts.httpUrl).port) });
  });
  after(async () => {
    await relay.stop();
    await ts.close();
  });

  it('refuses each before any request, exit 2, one line', async () => {
    const dots = (what: string, v: string) => `updraft: error: ${what} "${v}" is refused: "." and ".." cannot be ids: a URL path cannot hold them\n`;
    const cases: [string[], string][] = [
      [['device', 'show', '.'], dots('device id', '.')],
      [['device', 'delete', '..'], dots('device id', '..')],
      [['device', 'revoke', '..'], dots('device id', '..')],
      [['device', 'update', '.', '--tag', 'a'], dots('device id', '.')],
      [['device', 'history', '..'], dots('device id', '..')],
      [['job', 'cancel', '..'], dots('job id', '..')],
      [['job', 'show', '.'], dots('job id', '.')],
      [['job', 'log', 'j-1', '..'], dots('device id', '..')],
      [['job', 'log', '..'], dots('job id', '..')],
      [['group', 'show', '..'], dots('group name', '..')],
      [['group', 'delete', '.'], dots('group name', '.')],
    ];
    for (const [args, line] of cases) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stderr, line, args.join(' '));
    }
    assert.equal(relay.connections, 0, 'no request reached the server');
  });

  it('still sends an id that only holds dots among other characters', async () => {
    const r = await cli('device', 'show', 'a..b');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no device a\.\.b|a\.\.b/);
    assert.equal(relay.connections > 0, true);
  });
});
