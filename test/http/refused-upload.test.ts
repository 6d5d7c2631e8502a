/**
 * A request refused before its body is used is answered at once and its connection closed,
 * its body unread: a 500 MB upload with a misspelt query parameter was read to its end before
 * its 400 (the server drained every refused body to keep the connection). A small refused
 * body is still read and dropped, so its connection serves the next request.
 * Real server, real HTTP over a raw socket: the client declares a body far larger than the
 * kernel's buffers hold and keeps sending it after the answer and the server's FIN
 * (half-open: a client busy writing that has not looked at its answer yet); the server must
 * stop taking it, and the connection must end, with most of it unsent. A server that reads
 * the body to its end (answered at once or not) takes it all.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { eventually, runNode } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** Far more than an answer takes: a server that waits for the body fails here, not at the runner's timeout. */
const NO_ANSWER_MS = 10_000;
/** Far more than the server takes to end a connection it stopped reading (it lingers 2 s for the client to read the answer). */
const NO_CLOSE_MS = 20_000;
/** What the client sends at once. */
const CHUNK = 64 * 1024;
/** The server's --max-artifact-bytes. */
const MAX_ARTIFACT = 512 * 1024 * 1024;
/**
 * The length each refused upload declares (under the artifact limit): far more than a
 * connection's buffers hold (Linux's largest defaults: 32 MiB to receive, 4 MiB to send), so
 * a client that got most of it out was read by the server.
 */
const DECLARED = 256 * 1024 * 1024;
/** The most a client may get out of a refused upload: what the buffers hold, and a little the server reads before it stops. */
const TAKEN_AT_MOST = DECLARED / 4;
/** The length of an upload sent in parts and taken. */
const TAKEN = 2 * 1024 * 1024;
/** Uploads made by fetch in a child process. */
const UPLOADS = 10;

/** One HTTP/1.1 connection read as text. */
class Connection {
  readonly socket: net.Socket;
  text = '';
  closed = false;
  /** Body bytes the kernel took from `pump`. */
  sent = 0;

  /** `allowHalfOpen`: the client keeps sending after the server's FIN (Node's default ends it at once). */
  constructor(port: number, options: { allowHalfOpen?: boolean } = {}) {
    this.socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false });
    this.socket.on('data', (d) => (this.text += d.toString('latin1')));
    // a write after the server closed fails (EPIPE, ECONNRESET): the close is what is checked
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closed = true));
  }

  /** The complete answers received so far (each with a content-length). */
  answers(): { status: number; headers: Record<string, string>; body: string }[] {
    const out = [];
    let rest = this.text;
    for (;;) {
      const end = rest.indexOf('\r\n\r\n');
      if (end < 0) return out;
      const [line, ...fields] = rest.slice(0, end).split('\r\n');
      const headers = Object.fromEntries(fields.map((f) => [f.slice(0, f.indexOf(':')).toLowerCase(), f.slice(f.indexOf(':') + 1).trim()]));
      const length = Number(headers['content-length'] ?? 0);
      if (rest.length < end + 4 + length) return out;
      out.push({ status: Number(line!.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
      rest = rest.slice(end + 4 + length);
    }
  }

  /** Resolves with true once the connection is closed (reset included), false if it is still open after `ms`. */
  closedWithin(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Waits for the `n`th answer. */
  answer(n: number): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    return eventually(async () => this.answers()[n - 1], NO_ANSWER_MS, `answer ${n} on the connection`);
  }

  write(bytes: string | Buffer): void {
    if (!this.closed) this.socket.write(bytes);
  }

  /**
   * Sends `n` body bytes as fast as the server takes them, answered or not, until all are out
   * or the connection ends: each write waits until the kernel took the one before (`sent`).
   */
  async pump(n: number): Promise<void> {
    const chunk = Buffer.alloc(CHUNK, 0x20);
    while (this.sent < n && !this.closed) {
      const size = Math.min(CHUNK, n - this.sent);
      const taken = await new Promise<boolean>((resolve) => this.socket.write(chunk.subarray(0, size), (err) => resolve(!err)));
      if (!taken) return;
      this.sent += size;
    }
  }
}

describe('a refused upload', () => {
  let ts: TestServer;
  let viewer: string;
  const port = () => Number(new URL(ts.httpUrl).port);

  before(async () => {
    ts = await startTestServer({ flags: { 'max-artifact-bytes': MAX_ARTIFACT } });
    const headers = { authorization: `Bearer ${ts.token}` };
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=1.0.0`, { method: 'POST', headers, body: new Uint8Array(Buffer.from('build')) })).status, 201);
    const added = await fetch(`${ts.httpUrl}/api/v1/viewer-tokens`, { method: 'POST', headers, body: JSON.stringify({ name: 'wall' }) });
    viewer = ((await added.json()) as { token: string }).token;
  });
  after(() => ts.close());

  /**
   * Sends `POST target` declaring `declared` bytes and keeps sending them, also after the
   * answer; checks it is answered while the upload is unfinished, with `Connection: close`,
   * then that the server stopped taking the body: the connection ends with at most
   * TAKEN_AT_MOST bytes out (a server reading the body takes them all, and ends it only then).
   */
  async function refused(target: string, token: string | undefined, declared: number): Promise<{ status: number; message: string }> {
    const c = new Connection(port(), { allowHalfOpen: true });
    try {
      const auth = token === undefined ? '' : `authorization: Bearer ${token}\r\n`;
      c.write(`POST ${target} HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/octet-stream\r\ncontent-length: ${declared}\r\n\r\n`);
      const pumped = c.pump(declared);
      const first = await c.answer(1);
      assert.ok(c.sent < declared, `${target}: answered only once the whole body was sent`);
      assert.equal(first.headers.connection, 'close', `${target}: the answer says the connection closes`);
      const closed = await c.closedWithin(NO_CLOSE_MS);
      assert.ok(c.sent <= TAKEN_AT_MOST, `${target}: the server took ${c.sent} of the ${declared} bytes declared ${closed ? 'before the connection ended' : 'and the connection is still open'}: it reads the body`);
      assert.ok(closed, `${target}: the connection is still open ${NO_CLOSE_MS} ms after the answer, ${c.sent} bytes of the body out`);
      await pumped;
      assert.equal(c.answers().length, 1, `${target}: one answer`);
      return { status: first.status, message: (JSON.parse(first.body) as { error: { message: string } }).error.message };
    } finally {
      c.socket.destroy();
    }
  }

  it('is answered before its body is sent, and its connection closed, for every refusal that comes before the body is read', async () => {
    const cases: [string, string | undefined, number, RegExp][] = [
      ['/api/v1/artifacts?name=fw&version=2.0.0&devicetype=rpi4', ts.token, 400, /^unknown query parameter "devicetype"/],
      ['/api/v1/artifacts?name=fw&version=2.0.0&deviceTypes=a&deviceTypes=b', ts.token, 400, /^query parameter "deviceTypes" is given 2 times/],
      ['/api/v1/artifacts?name=fw&version=2.0.0', undefined, 401, /^the operator token is required/],
      ['/api/v1/artifacts?name=fw&version=2.0.0', 'wrong', 401, /^the operator token is wrong$/],
      ['/api/v1/artifacts?name=fw&version=2.0.0', viewer, 403, /^the viewer token wall is read-only/],
      ['/api/v1/artifactz?name=fw&version=2.0.0', ts.token, 404, /^no route for POST \/api\/v1\/artifactz$/],
      ['/api/v1/artifacts?name=fw&version=1.0.0', ts.token, 409, /^artifact fw@1\.0\.0 already exists/],
      ['/api/v1/artifacts?name=fw', ts.token, 400, /^query parameter "version" is required$/],
      ['/api/v1/artifacts?name=fw&version=two', ts.token, 400, /must be a semantic version/],
      // semver §9: a numeric prerelease identifier has no leading zero, and none is empty
      ['/api/v1/artifacts?name=fw&version=2.0.0-rc.01', ts.token, 400, /^artifact version "2\.0\.0-rc\.01" must be a semantic version/],
      ['/api/v1/artifacts?name=fw&version=2.0.0-rc..1', ts.token, 400, /must be a semantic version/],
      [`/api/v1/artifacts?name=fw&version=1.0.0-${'a'.repeat(200)}`, ts.token, 400, /characters long: at most/],
      ['/api/v1/artifacts?name=fw&version=2.0.0&requires=%3E%3E1', ts.token, 400, /in requires is not an operator/],
    ];
    // at once: each connection ends only after the server's linger
    await Promise.all(
      cases.map(async ([target, token, status, message]) => {
        const r = await refused(target, token, DECLARED);
        assert.equal(r.status, status, `${target}: ${r.message}`);
        assert.match(r.message, message, target);
      }),
    );
    assert.equal(await ts.server.store.getArtifact('fw', '2.0.0'), undefined, 'nothing stored');
  });

  it('is refused at once for a declared length over its limit (413), not after reading up to the limit', async () => {
    const [build, job, none] = await Promise.all([
      refused('/api/v1/artifacts?name=fw&version=3.0.0', ts.token, MAX_ARTIFACT + 1),
      refused('/api/v1/jobs', ts.token, DECLARED),
      refused('/api/v1/jobs/j-1/pause', ts.token, DECLARED),
    ]);
    assert.deepEqual(build, { status: 413, message: `the build is ${MAX_ARTIFACT + 1} bytes (its Content-Length): the server takes builds of at most ${MAX_ARTIFACT} bytes (its --max-artifact-bytes)` });
    assert.deepEqual(job, { status: 413, message: 'request body exceeds 1048576 bytes' });
    assert.deepEqual(none, { status: 413, message: 'request body exceeds 1048576 bytes' });
  });

  it("reaches a client still sending its body: fetch in another process reports the 409, not a broken pipe (updraft artifact add's)", async () => {
    // closed at once with the body unread, the connection was reset under fetch, which failed
    // with EPIPE nearly every time: ten uploads of 8 MiB all see their answer
    const script = `
      const results = [];
      for (let i = 0; i < ${UPLOADS}; i++) {
        async function* body() { for (let n = 0; n < 128; n++) yield new Uint8Array(64 * 1024); }
        try {
          const res = await fetch(process.env.TARGET, { method: 'POST', headers: { authorization: 'Bearer ' + process.env.TOKEN }, body: body(), duplex: 'half' });
          results.push(res.status + ' ' + JSON.parse(await res.text()).error.message);
        } catch (err) {
          results.push('failed: ' + (err.cause?.code ?? err.message));
        }
      }
      console.log(JSON.stringify(results));`;
    const r = await runNode(['--input-type=module', '-e', script], { env: { TARGET: `${ts.httpUrl}/api/v1/artifacts?name=fw&version=1.0.0`, TOKEN: ts.token } });
    assert.equal(r.code, 0, r.stderr);
    const want = '409 artifact fw@1.0.0 already exists; versions are immutable, add a new version';
    assert.deepEqual(JSON.parse(r.stdout), Array.from({ length: UPLOADS }, () => want));
  });

  it('of a few bytes is read and dropped, and its connection serves the next request', async () => {
    const c = new Connection(port());
    try {
      c.write(`POST /api/v1/artifacts?name=fw&version=2.0.0&devicetype=rpi4 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ts.token}\r\ncontent-length: 5\r\n\r\nbuild`);
      const first = await c.answer(1);
      assert.equal(first.status, 400);
      assert.notEqual(first.headers.connection, 'close');
      c.write(`GET /api/v1/whoami HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ts.token}\r\n\r\n`);
      const second = await c.answer(2);
      assert.deepEqual([second.status, second.body], [200, '{"role":"operator"}']);
    } finally {
      c.socket.destroy();
    }
  });

  it('an upload sent in parts is still taken', async () => {
    const c = new Connection(port());
    try {
      c.write(`POST /api/v1/artifacts?name=fw&version=4.0.0 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ts.token}\r\ncontent-length: ${TAKEN}\r\n\r\n`);
      c.write(Buffer.alloc(CHUNK, 0x61));
      await new Promise((r) => setImmediate(r));
      c.write(Buffer.alloc(TAKEN - CHUNK, 0x61));
      const answer = await c.answer(1);
      assert.equal(answer.status, 201, answer.body);
      assert.equal((await ts.server.store.getArtifact('fw', '4.0.0'))?.size, TAKEN);
    } finally {
      c.socket.destroy();
    }
  });
});
