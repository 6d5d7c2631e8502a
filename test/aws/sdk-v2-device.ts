/**
 * A device built on the real `aws-iot-device-sdk-v2` (`IotShadowClientv2`, `IotJobsClientv2`),
 * run as a child process of a test: `SSL_CERT_FILE` (the test CA) is set in its
 * environment only, and it leaves with `process.exit`, because aws-crt 1.x aborts in a
 * native finalizer when Node tears its environment down after a normal exit.
 *
 * One full update: report, receive a delta, get, take the next job, report IN_PROGRESS and
 * SUCCEEDED, receive notify-next for a following job. Operator steps (desired state,
 * deployments) go through Updraft's API and MQTT operator identity. Prints `RESULT ok` and
 * exits 0, or prints the failure and exits 1. Configuration: JSON in `AWS_DEVICE_CONFIG`.
 */
import assert from 'node:assert/strict';
import { iot, iotjobs, iotshadow, mqtt, mqtt5 } from 'aws-iot-device-sdk-v2';
import mqttjs from 'mqtt';
import { eventually } from '../helpers/cli.ts';
import { deploy } from './support.ts';

/** What the parent test passes. */
export interface V2DeviceConfig {
  protocol: 'mqtt311' | 'mqtt5';
  host: string;
  port: number;
  thing: string;
  cert: string;
  key: string;
  httpUrl: string;
  token: string;
  /** Where the operator publishes desired state (user `operator`, the token as password). */
  operatorMqttUrl: string;
}

const config = JSON.parse(process.env.AWS_DEVICE_CONFIG ?? '{}') as V2DeviceConfig;
const thing = config.thing;
const closers: (() => unknown)[] = [];

/** Collects a stream's events and resolves once subscribed. */
async function collect<T>(stream: { on(e: string, l: (ev: any) => void): unknown; open(): void; close(): void }): Promise<T[]> {
  const events: T[] = [];
  const subscribed = new Promise<void>((resolve, reject) => {
    stream.on('subscriptionStatus', (s: { type: number; error?: unknown }) => (s.type === 0 ? resolve() : reject(new Error(`subscription failed: ${String(s.error)}`))));
  });
  stream.on('incomingPublish', (ev: { message: T }) => events.push(ev.message));
  stream.open();
  closers.push(() => stream.close());
  await subscribed;
  return events;
}

/** Connects with the protocol asked for; resolves with the two service clients. */
async function connect(): Promise<{ shadow: iotshadow.IotShadowClientv2; jobs: iotjobs.IotJobsClientv2 }> {
  const options = { maxRequestResponseSubscriptions: 8, maxStreamingSubscriptions: 8, operationTimeoutInSeconds: 15 };
  if (config.protocol === 'mqtt311') {
    const built = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder(config.cert, config.key).with_endpoint(config.host).with_port(config.port).with_client_id(thing).with_clean_session(true).build();
    const connection = new mqtt.MqttClient().new_connection(built);
    await connection.connect();
    closers.push(() => connection.disconnect());
    return { shadow: iotshadow.IotShadowClientv2.newFromMqtt311(connection, options), jobs: iotjobs.IotJobsClientv2.newFromMqtt311(connection, options) };
  }
  const builder = iot.AwsIotMqtt5ClientConfigBuilder.newDirectMqttBuilderWithMtlsFromMemory(config.host, config.cert, config.key);
  builder.withPort(config.port);
  builder.withConnectProperties({ clientId: thing, keepAliveIntervalSeconds: 60 });
  const client = new mqtt5.Mqtt5Client(builder.build());
  const connected = new Promise<void>((resolve, reject) => {
    client.once('connectionSuccess', () => resolve());
    client.once('connectionFailure', (e) => reject(new Error(`MQTT 5 connection failed: ${e.error.toString()}`)));
  });
  client.start();
  await connected;
  closers.push(() => client.stop());
  return { shadow: iotshadow.IotShadowClientv2.newFromMqtt5(client, options), jobs: iotjobs.IotJobsClientv2.newFromMqtt5(client, options) };
}

async function setDesired(desired: Record<string, unknown>): Promise<void> {
  const op = await mqttjs.connectAsync(config.operatorMqttUrl, { username: 'operator', password: config.token, clientId: `op-${process.pid}`, reconnectPeriod: 0 });
  await op.publishAsync(`state/${thing}/update`, JSON.stringify({ state: { desired } }), { qos: 1 });
  await op.endAsync();
}

const modeled = (check: (e: { code?: unknown; message?: unknown }) => void) => (err: { modeledError?: { code?: unknown; message?: unknown } }) => {
  check(err.modeledError ?? {});
  return true;
};

/** Marks progress in the output, so a failure says where it happened. */
const step = (what: string) => process.stdout.write(`STEP ${what}\n`);

async function run(): Promise<void> {
  const { shadow, jobs } = await connect();
  step('connected');
  closers.push(() => shadow.close(), () => jobs.close());
  const deltas = await collect<iotshadow.model.ShadowDeltaUpdatedEvent>(shadow.createShadowDeltaUpdatedStream({ thingName: thing }));
  const nexts = await collect<iotjobs.model.NextJobExecutionChangedEvent>(jobs.createNextJobExecutionChangedStream({ thingName: thing }));
  const changes = await collect<iotjobs.model.JobExecutionsChangedEvent>(jobs.createJobExecutionsChangedStream({ thingName: thing }));

  step('subscribed');
  // report; the operator changes desired; the delta arrives on the AWS topic; get shows it
  const reported = await shadow.updateShadow({ thingName: thing, state: { reported: { color: 'blue', fw: '1.0.0' } } });
  assert.equal((reported.state?.reported as Record<string, unknown> | undefined)?.color, 'blue');
  await setDesired({ color: 'red' });
  const delta = await eventually(async () => deltas.find((d) => (d.state as Record<string, unknown> | undefined)?.color === 'red'), 10_000, 'delta');
  assert.equal(typeof delta.version, 'number');
  const doc = await shadow.getShadow({ thingName: thing });
  assert.deepEqual(doc.state?.delta, { color: 'red' });
  await assert.rejects(shadow.updateShadow({ thingName: thing, state: { reported: { color: 'red' } }, version: 1 }), modeled((e) => assert.deepEqual([e.code, e.message], [409, 'Version conflict'])));
  await shadow.updateShadow({ thingName: thing, state: { reported: { color: 'red' } } });
  const named = await shadow.updateNamedShadow({ thingName: thing, shadowName: 'config', state: { reported: { interval: 30 } } });
  assert.equal(named.version, 1);
  await assert.rejects(shadow.getNamedShadow({ thingName: thing, shadowName: 'nothing' }), modeled((e) => assert.deepEqual([e.code, e.message], [404, "No shadow exists with name: 'nothing'"])));

  step('shadow done');
  // jobs: nothing pending, then a deployment announced on notify-next
  const none = await jobs.getPendingJobExecutions({ thingName: thing });
  assert.deepEqual([none.inProgressJobs, none.queuedJobs], [[], []]);
  const first = await deploy(config, [thing], 'fw@2.0.0');
  const announced = await eventually(async () => nexts.find((n) => n.execution?.jobId === first), 10_000, 'notify-next of the first job');
  assert.equal(announced.execution?.status, 'QUEUED');
  const started = await jobs.startNextPendingJobExecution({ thingName: thing, statusDetails: { phase: 'DOWNLOADING' }, stepTimeoutInMinutes: 30 });
  const execution = started.execution!;
  assert.deepEqual([execution.jobId, execution.status, execution.executionNumber], [first, 'IN_PROGRESS', 1]);
  const software = (execution.jobDocument as { software: { version: string; url: string } }).software;
  assert.equal(software.version, '2.0.0');
  assert.match(software.url, new RegExp(`device=${thing}`));
  const progress = await jobs.updateJobExecution({ thingName: thing, jobId: first, status: iotjobs.model.JobStatus.IN_PROGRESS, expectedVersion: execution.versionNumber!, statusDetails: { phase: 'INSTALLING' }, includeJobExecutionState: true });
  assert.equal(progress.executionState?.status, 'IN_PROGRESS');
  await assert.rejects(jobs.updateJobExecution({ thingName: thing, jobId: first, status: iotjobs.model.JobStatus.SUCCEEDED, expectedVersion: execution.versionNumber! }), modeled((e) => assert.equal(e.code, 'VersionMismatch')));
  await jobs.updateJobExecution({ thingName: thing, jobId: first, status: iotjobs.model.JobStatus.SUCCEEDED });
  const described = await jobs.describeJobExecution({ thingName: thing, jobId: first });
  assert.equal(described.execution?.status, 'SUCCEEDED');
  await assert.rejects(jobs.updateJobExecution({ thingName: thing, jobId: first, status: iotjobs.model.JobStatus.IN_PROGRESS }), modeled((e) => assert.equal(e.code, 'InvalidStateTransition')));

  step('first job done');
  // a following job: notify-next and notify announce it
  const second = await deploy(config, [thing], 'fw@3.0.0');
  const next = await eventually(async () => nexts.find((n) => n.execution?.jobId === second), 10_000, 'notify-next of the second job');
  assert.equal((next.execution?.jobDocument as { software: { version: string } }).software.version, '3.0.0');
  await eventually(async () => changes.find((c) => c.jobs?.QUEUED?.[0]?.jobId === second), 10_000, 'notify of the second job');
  const pending = await jobs.getPendingJobExecutions({ thingName: thing });
  assert.equal(pending.queuedJobs?.[0]?.jobId, second);
  await assert.rejects(jobs.describeJobExecution({ thingName: thing, jobId: 'no-such-job' }), modeled((e) => assert.equal(e.code, 'ResourceNotFound')));
  process.stdout.write(`JOBS ${JSON.stringify({ first, second })}\n`);
}

run().then(
  async () => {
    for (const close of closers.reverse()) await close();
    process.stdout.write('RESULT ok\n', () => process.exit(0));
  },
  (err: unknown) => {
    const inner = (err as { internalError?: unknown; modeledError?: unknown }).internalError ?? (err as { modeledError?: unknown }).modeledError;
    const detail = inner === undefined ? '' : ` (${inner instanceof Error ? inner.message : JSON.stringify(inner)})`;
    process.stdout.write(`RESULT failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}${detail}\n`, () => process.exit(1));
  },
);
