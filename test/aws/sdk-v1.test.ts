/**
 * The legacy `aws-iot-device-sdk` (v1) `thingShadow` and `jobs` classes against the
 * embedded broker's MQTTS listener (MQTT 3.1.1, client certificates from Updraft's CA;
 * v1 takes the CA file itself, it has no system trust store). The jobs client runs as a
 * second identity, a gateway whose `awsThings` attribute lets it act for the thing (v1
 * opens one connection per class, and a client id may be connected once).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
// @ts-expect-error the v1 SDK ships no type declarations
import awsIot from 'aws-iot-device-sdk';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, executionStatus } from './support.ts';

/** The v1 classes as used here. */
interface V1Device {
  on(event: string, listener: (...args: any[]) => void): void;
  end(force: boolean, cb: () => void): void;
}
interface V1Job {
  id: string;
  document: { operation: string; software: { version: string; url: string } };
  inProgress(details: Record<string, string>, cb: (err?: Error) => void): void;
  succeeded(details: Record<string, string>, cb: (err?: Error) => void): void;
}

describe('aws-iot-device-sdk v1 thingShadow and jobs (embedded broker, TLS)', () => {
  let ts: TestServer;
  let ca: Buffer;
  const devices: V1Device[] = [];
  const thing = 'v1-thing';

  const options = async (clientId: string) => {
    const cert = await ts.server.security.ca.issueDeviceCertificate(clientId);
    return { privateKey: Buffer.from(cert.privateKey), clientCert: Buffer.from(cert.certificate), caCert: ca, clientId, host: 'localhost', port: ts.server.broker.tlsPort!, protocol: 'mqtts', reconnectPeriod: 500, keepalive: 30 };
  };

  before(async () => {
    ts = await startTestServer();
    ca = await readFile(caPaths(ts.dataDir).cert);
    await addArtifact(ts, '2.0.0');
    await addArtifact(ts, '3.0.0');
    await registerDevice(ts, thing);
    await registerDevice(ts, 'v1-gateway', { attributes: { awsThings: thing } });
  });
  after(async () => {
    for (const d of devices) await new Promise<void>((resolve) => d.end(true, resolve));
    await ts.close();
  });

  it('thingShadow: register, report, receive a delta, get', async () => {
    const shadows = awsIot.thingShadow(await options(thing)) as V1Device & {
      register(name: string, opts: object, cb: (err?: Error) => void): void;
      update(name: string, state: object): string | null;
      get(name: string): string | null;
    };
    devices.push(shadows);
    const statuses: { token: string; stat: string; state: any }[] = [];
    const deltas: any[] = [];
    shadows.on('status', (_name: string, stat: string, token: string, state: unknown) => statuses.push({ token, stat, state }));
    shadows.on('delta', (_name: string, state: unknown) => deltas.push(state));
    await new Promise<void>((resolve) => shadows.on('connect', () => resolve()));
    await new Promise<void>((resolve, reject) => shadows.register(thing, { persistentSubscribe: true }, (err) => (err ? reject(err) : resolve())));

    const reportToken = shadows.update(thing, { state: { reported: { color: 'blue' } } });
    assert.ok(reportToken);
    const reported = await eventually(async () => statuses.find((s) => s.token === reportToken), 10_000, 'update accepted');
    assert.equal(reported.stat, 'accepted');

    await ts.server.replica.update({ deviceId: thing, name: '' }, { state: { desired: { color: 'red' } } }, { kind: 'operator', id: 'test' });
    const delta = await eventually(async () => deltas.find((d) => d.state?.color === 'red'), 10_000, 'delta');
    assert.equal(typeof delta.version, 'number');

    const getToken = shadows.get(thing);
    const got = await eventually(async () => statuses.find((s) => s.token === getToken), 10_000, 'get accepted');
    assert.equal(got.stat, 'accepted');
    assert.deepEqual(got.state.state.delta, { color: 'red' });

    // v1 sends the last version it saw with each update: it is current, so accepted
    const fixToken = shadows.update(thing, { state: { reported: { color: 'red' } } });
    assert.equal((await eventually(async () => statuses.find((s) => s.token === fixToken), 10_000, 'update accepted')).stat, 'accepted');
  });

  it('jobs: take the next job, report IN_PROGRESS and SUCCEEDED, notify-next for a following job', async () => {
    const jobs = awsIot.jobs(await options('v1-gateway')) as V1Device & {
      subscribeToJobs(thing: string, cb: (err: Error | null, job: V1Job) => void): void;
      startJobNotifications(thing: string, cb: (err?: Error) => void): void;
    };
    devices.push(jobs);
    const received: V1Job[] = [];
    await new Promise<void>((resolve) => jobs.on('connect', () => resolve()));
    jobs.subscribeToJobs(thing, (err, job) => {
      assert.ifError(err);
      received.push(job);
    });
    await new Promise<void>((resolve, reject) => jobs.startJobNotifications(thing, (err) => (err ? reject(err) : resolve())));

    const first = await deploy(ts, [thing], 'fw@2.0.0');
    const job = await eventually(async () => received.find((j) => j.id === first), 10_000, 'first job');
    assert.equal(job.document.operation, 'updraft.software-update');
    assert.equal(job.document.software.version, '2.0.0');
    await new Promise<void>((resolve, reject) => job.inProgress({ phase: 'DOWNLOADING' }, (err) => (err ? reject(err) : resolve())));
    await eventually(async () => ((await executionStatus(ts, first, thing)) === 'IN_PROGRESS' ? true : undefined), 10_000, 'IN_PROGRESS recorded');
    await new Promise<void>((resolve, reject) => job.succeeded({}, (err) => (err ? reject(err) : resolve())));
    await eventually(async () => ((await executionStatus(ts, first, thing)) === 'SUCCEEDED' ? true : undefined), 10_000, 'SUCCEEDED recorded');

    const second = await deploy(ts, [thing], 'fw@3.0.0');
    const next = await eventually(async () => received.find((j) => j.id === second), 10_000, 'notify-next of the second job');
    assert.equal(next.document.software.version, '3.0.0');
  });
});
