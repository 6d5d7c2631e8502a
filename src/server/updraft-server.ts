/**
 * The composition root (STYLE.md habit 3): builds every part from the validated config,
 * wires them through one deps object each, starts them in dependency order and stops them
 * in reverse. Embedded topology: aedes broker, replica, jobs, HTTP API + downloads, SQLite
 * store and a local artifact directory, all in this process.
 */
import path from 'node:path';
import { ArtifactCache } from '../artifacts/artifact-cache.ts';
import { ArtifactService } from '../artifacts/artifact-service.ts';
import { HmacUrlIssuer, S3UrlIssuer, type DownloadUrlIssuer } from '../artifacts/download-url-issuer.ts';
import { S3BlobStore } from '../artifacts/s3-blob-store.ts';
import { LocalBlobStore } from '../artifacts/local-blob-store.ts';
import { loadOrCreateKeyRing } from '../artifacts/key-ring.ts';
import { UrlSigner } from '../artifacts/url-signer.ts';
import { RegistryAuthenticator } from '../broker/registry-authenticator.ts';
import { DEFAULT_MAX_PACKET_BYTES, EmbeddedBroker } from '../broker/embedded-broker.ts';
import { ExternalBroker } from '../broker/external-broker.ts';
import type { MessageBus } from '../broker/message-bus.ts';
import { OPERATOR_USERNAME } from '../broker/authenticator.ts';
import type { UpdraftConfig } from '../config/schema.ts';
import { UpdraftError } from '../errors.ts';
import { EventRelay } from '../cluster/event-relay.ts';
import { PostgresAdvisoryLease } from '../cluster/postgres-advisory-lease.ts';
import { withAwsDoors } from '../aws/aws-bus.ts';
import { AwsThings } from '../aws/aws-things.ts';
import { AwsJobsDoor } from '../aws/jobs-door.ts';
import { AwsShadowDoor } from '../aws/shadow-door.ts';
import { CredentialService, withCredentials } from '../credentials/credential-service.ts';
import { CertificateRenewal, withCertificateRenewal } from '../pki/certificate-renewal.ts';
import { JobLogService, withJobLogs } from '../jobs/job-logs.ts';
import { InProcessLease } from '../cluster/lease.ts';
import { AWS_REQUEST_FILTERS, awsThingOf } from '../protocol/aws-topics.ts';
import { DownloadTokens } from '../credentials/download-token.ts';
import { EventBus } from '../events/event-bus.ts';
import { addApiRoutes } from '../http/api-routes.ts';
import { addBrokerRoutes } from '../http/broker-routes.ts';
import { ActiveDownloads } from '../http/active-downloads.ts';
import { downloadRoute, type DownloadStats } from '../http/download-route.ts';
import { addFleetRoutes, type MetricsSource } from '../http/fleet-routes.ts';
import { addHealthRoutes } from '../http/health-routes.ts';
import { readKeyFacts } from '../health/key-facts.ts';
import { Dashboard } from '../http/dashboard.ts';
import { HttpServer } from '../http/http-server.ts';
import { sendJson } from '../http/respond.ts';
import { Router } from '../http/router.ts';
import { addSecurityRoutes } from '../http/security-routes.ts';
import { DeploymentService } from '../jobs/deployment-service.ts';
import { DisruptionResync } from '../jobs/disruption-resync.ts';
import { ExecutionTracker } from '../jobs/execution-tracker.ts';
import { Rollouts } from '../jobs/rollouts.ts';
import { ReadinessProbe } from './readiness.ts';
import { refuseWithdrawn, RevokedDevices } from '../registry/revoked-devices.ts';
import { probeBlobStore } from '../artifacts/blob-store-probe.ts';
import { WebhookNotifier } from '../events/webhook-notifier.ts';
import { DeviceRegistry } from '../registry/device-registry.ts';
import { ShadowReplica } from '../shadow/replica.ts';
import { TombstoneRetention } from '../shadow/tombstone-retention.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { createBlobStore, createStateStore } from './adapters.ts';
import { EventLoopMonitor } from './event-loop-monitor.ts';
import { loadOrCreateOperatorToken, markOperatorTokenUnshown, replaceOperatorToken } from './operator-token.ts';
import { NamedTokens, addNamedTokenRoutes } from './named-tokens.ts';
import { UpdateCommands } from './update-commands.ts';
import { CertificateExpiryWatch } from '../signing/certificate-expiry.ts';
import { SharedCertificate } from '../signing/shared-certificate.ts';
import { loadSecurity, type SecurityMaterial } from './security-setup.ts';
import { OperatorTlsReload } from './operator-tls-reload.ts';
import { ServerTlsRenewal, type TlsListener } from './server-tls-renewal.ts';
import { SharedSecrets, checkSharedSecrets, type SharedSecretValues } from './shared-secrets.ts';
import { DataDirLock, whileSettingUp } from './data-dir-lock.ts';
import { checkOwnFiles, checkWritableDir } from '../util/writable-dir.ts';

/** The files of keys/ and pki/ a server opens (signing-key.ts, root-key.ts, key-ring.ts; certificate-authority.ts, server-tls.ts). */
const SERVER_KEY_FILES = ['software-signing.key', 'software-signing.pub', 'software-signing.cert', 'root.pub', 'root-rotations.json', 'url-signing.json'];
const SERVER_PKI_FILES = ['ca.crt', 'ca.key', 'server.crt', 'server.key', 'server-hosts.json'];
import { ClusterClock } from '../cluster/cluster-clock.ts';
import { mosquittoUserNameDefect } from '../broker/mosquitto-config.ts';

/**
 * How much later than a URL's or token's issue time a registration may be and still be the
 * one it was issued to: the issue time is in whole seconds (1 s), and with several instances
 * both are dated by the cluster's clock (the database's), which the instances follow to within
 * their round trip to it, so a little more covers them. It
 * was 60 s: a device deleted and its id registered again at once (a replacement) left the
 * earlier device's URLs and tokens of its last minute working for the new registration (QA),
 * and whoever held the retired device's secret could take a fresh one at any moment.
 */
const REGISTRATION_MARGIN_MS = 3_000;

/** A part with a lifecycle. */
interface Part {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The running system. */
export class UpdraftServer {
  readonly config: UpdraftConfig;
  readonly events = new EventBus();
  private readonly logger: Logger;
  private started: Part[] = [];
  private online = new Set<string>();
  /** Set by start(). */
  operatorToken = '';
  /** True when start() generated the operator token. */
  tokenCreated = false;
  /** True when the operator token has not been printed yet (made by this start, or by one that failed before printing it): `updraft server` prints it, then calls markOperatorTokenShown. */
  tokenUnshown = false;
  broker!: EmbeddedBroker;
  /** The bus the replica uses: the embedded broker, or an external one with --mqtt-url (then `broker` is not started). */
  bus!: MessageBus;
  /** Set when stop() begins: /readyz then answers 503, so a balancer drains the instance. */
  private stopping = false;
  /** The part stop() is stopping now. */
  private stoppingPart: string | undefined;
  http!: HttpServer;
  replica!: ShadowReplica;
  store!: StateStore;
  artifacts!: ArtifactService;
  deployments!: DeploymentService;
  tracker!: ExecutionTracker;
  registry!: DeviceRegistry;
  /** Groups, rollout jobs and their engine, the fleet view (issue 4). */
  rollouts!: Rollouts;
  /** Signing key, CA and TLS material (issue 5). */
  security!: SecurityMaterial;
  /** The server certificate's renewal and the CA's expiry (server-tls-renewal.ts). */
  tlsRenewal!: ServerTlsRenewal;
  /** The operator's own TLS files, read again (operator-tls-reload.ts; `reloadTlsFiles`). */
  private tlsReload: OperatorTlsReload | undefined;
  /** On a PostgreSQL store: this instance's shared secrets compared with the other instances' (shared-secrets.ts). */
  sharedSecrets: SharedSecrets | undefined;
  /** On a PostgreSQL store: the database's clock, which job times are kept by (cluster-clock.ts). */
  clusterClock: ClusterClock | undefined;

  constructor(config: UpdraftConfig, deps: { logger: Logger }) {
    this.config = config;
    this.logger = deps.logger;
  }

  /**
   * Reads the operator's own TLS files again now and serves a new, valid pair (SIGHUP, once a
   * renewal tool has written them), saying what it found; never throws.
   */
  async reloadTlsFiles(): Promise<void> {
    await this.tlsReload?.reloadNow();
  }

  /** URL devices and the CLI use to reach the HTTP server. */
  get publicUrl(): string {
    return this.config.http.publicUrl || `${this.config.http.tls === 'on' ? 'https' : 'http'}://127.0.0.1:${this.http.port}`;
  }

  private async startPart(part: Part): Promise<void> {
    await part.start();
    this.started.push(part);
  }

  /** Starts every part; on failure stops what had started and rethrows. */
  async start(): Promise<void> {
    try {
      await this.startParts();
    } catch (err) {
      await this.stop();
      // a token this start made has not been printed: the next start that serves prints it
      if (this.tokenCreated) await markOperatorTokenUnshown(path.resolve(this.config.dataDir)).catch((e: Error) => this.logger.warn(`the operator token in ${this.config.dataDir} was not printed, and will not be at the next start: ${e.message}`));
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { config, logger, events } = this;
    const dataDir = path.resolve(config.dataDir);
    // the data directory is taken first: the embedded store refuses a directory whose
    // updraft.db another server has open (sqlite-store.ts), and that must come before anything
    // in it is created or rewritten. The operator token, the TLS material (a server
    // certificate reissued for other --tls-hosts) and the URL keys were written first: a
    // second server, refused, had replaced the running one's pki/server.crt and server.key
    // one the server's user cannot write is said at once, in one line naming it: it was found
    // at the first write, as SQLite's "disk I/O error" or a bare EACCES from the keys (QA)
    const hint = "give the server's user write access to it, or choose another with --data-dir";
    await checkWritableDir(dataDir, 'data directory', { hint });
    for (const sub of ['keys', 'pki']) await checkWritableDir(path.join(dataDir, sub), `${sub}/ directory`, { hint, create: false });
    // and its files (left by a start as another user): the token and keys are read, the
    // embedded database and its lock files written in place
    const db = config.db ? [] : ['updraft.db', 'updraft.db-wal', 'updraft.db-shm'];
    // only the files it opens: an operator's own file there (an offline root.key kept root-only) is not its to read
    const read = ['operator-token', ...SERVER_KEY_FILES.map((f) => `keys/${f}`), ...SERVER_PKI_FILES.map((f) => `pki/${f}`)];
    await checkOwnFiles(
      { readWrite: [...db, 'server.lock'].map((f) => path.join(dataDir, f)), read: read.map((f) => path.join(dataDir, f)) },
      "give the server's user access to it (chown it to that user), or choose another --data-dir",
    );
    // with --db the directory holds no database whose lock says a server uses it: this one does (restore)
    if (config.db) await this.startPart(new DataDirLock(dataDir));
    // SQLite in dataDir, or PostgreSQL with --db; S3 with --blob (adapters.ts)
    this.store = createStateStore(config, dataDir, logger.child('store'));
    if (config.db) await this.startPart(this.store);
    // one server at a time creates what a first start makes: another started with it waits,
    // then reads the same token, keys and CA (or is refused: the embedded file is in use)
    const { security, urlKeys } = await whileSettingUp(dataDir, async () => {
      if (!config.db) await this.startPart(this.store);
      const token = await loadOrCreateOperatorToken(dataDir);
      this.operatorToken = token.token;
      this.tokenCreated = token.created;
      this.tokenUnshown = token.unshown;
      const security = await loadSecurity(config, dataDir, logger.child('security'));
      // one live key ring: URL signatures and download tokens rotate together
      return { security, urlKeys: await loadOrCreateKeyRing(dataDir) };
    }, { logger });
    this.security = security;

    // instances on one database keep job times by its clock: one whose clock is off would
    // stamp deadlines the leader judges by another (cluster/cluster-clock.ts)
    const clock = config.db ? new ClusterClock({ store: this.store, logger: logger.child('cluster') }) : undefined;
    if (clock) await this.startPart(clock);
    this.clusterClock = clock;
    // instances on one PostgreSQL database must hold the same secrets: one whose copy differs
    // from what the others recorded is refused before it serves (shared-secrets.ts)
    const secretValues = (): SharedSecretValues => ({ 'operator-token': this.operatorToken, 'software-signing-key': security.signingKey.keyId, 'url-signing-keys': urlKeys, ca: security.ca.certificate });
    if (config.db) await checkSharedSecrets(this.store, dataDir, secretValues());
    const blobs = createBlobStore(config, dataDir, logger.child('artifacts'));
    await this.startPart(blobs);
    const artifactStorage = blobs instanceof S3BlobStore ? `bucket ${blobs.where}` : `artifact directory ${path.join(dataDir, 'artifacts')}`;
    // several instances on one database, each with its own directory: a build added through
    // one is answered 503 by every other, and nothing said why (soak QA). Said, not refused:
    // one instance on PostgreSQL is a setup of its own, and nothing here can tell it is alone
    if (config.db && !config.blob) {
      logger.warn(`the state store is a shared PostgreSQL database (--db) but artifact bytes are kept in this instance's own ${artifactStorage} (no --blob): with several instances, every instance must share the artifact storage (--blob s3://...), or a build added through one instance cannot be downloaded through another (its downloads are answered 503, its bytes missing); with a single instance, nothing is wrong (docs/deployment.md)`);
    }
    // the signing key's certificate, shared by the instances on this store: one installed on
    // any instance (or offline in one data directory) reaches every other
    // the certificate's expiry said at start, at an installation and hourly while running
    const certificateExpiry = new CertificateExpiryWatch({ manifests: security.manifests, logger: logger.child('security') });
    await this.startPart(certificateExpiry);
    const sharedCertificate = new SharedCertificate({ store: this.store, dataDir, signingKey: security.signingKey, manifests: security.manifests, events, logger: logger.child('security'), certificateExpiry });
    await this.startPart(sharedCertificate);
    const viewerTokens = new NamedTokens({ role: 'viewer', store: this.store, events, logger: logger.child('http') });
    await this.startPart(viewerTokens);
    const operatorTokens = new NamedTokens({ role: 'operator', store: this.store, events, logger: logger.child('http') });
    await this.startPart(operatorTokens);
    // a revoked device, or one whose secret was replaced, loses the connection it holds at
    // once: the embedded broker closes it; an external one, when its password file is reloaded
    // (`updraft broker mosquitto-config --watch` follows the registry's device.credentials events),
    // without publishing the device's Will: its presence is cleared here instead
    const cutOff = (id: string, which: 'all' | 'secret'): number | null => {
      if (!config.mqtt.url) return this.broker.cutOff(id, { certificates: which === 'all' });
      const bus = this.bus;
      if (bus instanceof ExternalBroker) {
        bus.clearPresence(id).catch((err: Error) => logger.warn("a cut-off device's presence was not cleared: it shows online until it connects again", { deviceId: id, error: err.message }));
      }
      return null;
    };
    this.registry = new DeviceRegistry({ store: this.store, events, cutOff, ...(config.mqtt.url ? { idDefect: mosquittoUserNameDefect } : {}), ...(clock ? { now: clock.now } : {}) });
    // hot builds in memory for downloads; a deleted build's bytes leave it
    const cache = new ArtifactCache({ blobs, maxBytes: config.downloads.memoryCacheBytes });
    this.artifacts = new ArtifactService({ store: this.store, blobs, maxArtifactBytes: config.downloads.maxArtifactBytes, sign: (a) => security.manifests.signArtifact(a), onBytesDeleted: (sha) => cache.forget(sha), events });

    const router = new Router();
    this.http = new HttpServer({ port: config.http.port, host: config.http.host, router, operatorToken: this.operatorToken, viewerTokens, operatorTokens, routesPending: true, logger: logger.child('http'), ...(security.httpTls ? { tls: security.httpTls } : {}) });
    await this.startPart(this.http);
    // with several instances, a URL's or token's issue time and a device's registration are
    // dated by the cluster's clock: a URL issued just after a registration on an instance whose
    // clock runs behind the registering one's was taken for an earlier registration's
    // (REGISTRATION_MARGIN_MS); their expiry moves with it, by the instance's offset
    const signer = new UrlSigner({ keys: urlKeys, baseUrl: this.publicUrl, ...(clock ? { now: clock.now } : {}) });
    const tokens = new DownloadTokens({ keys: urlKeys, ...(clock ? { now: clock.now } : {}) });
    // downloads.via s3: the bytes go from the bucket to the device, never through an instance
    const urls: DownloadUrlIssuer = config.downloads.via === 's3' && blobs instanceof S3BlobStore ? new S3UrlIssuer({ blobs }) : new HmacUrlIssuer({ signer });

    const authenticator = new RegistryAuthenticator({ store: this.store, operatorToken: this.operatorToken, logger: logger.child('auth') });
    this.broker = new EmbeddedBroker({
      port: config.mqtt.port,
      host: config.mqtt.host,
      authenticator,
      logger: logger.child('mqtt'),
      admission: { maxConnections: config.mqtt.maxConnections, maxConnectRate: config.mqtt.maxConnectRate },
      // a request over the shadow's limit still gets its 413: the packet limit stays well above it
      maxPacketBytes: Math.max(DEFAULT_MAX_PACKET_BYTES, 4 * config.shadow.maxDocumentBytes),
      maxSubscriptions: config.mqtt.maxSubscriptions,
      ...(security.mqttTls ? { tls: security.mqttTls } : {}),
    });
    // the instance connects as the operator with its token; a user and password in the URL took
    // their place (mqtt.js reads a URL's over its options'), and the start failed with 'refused
    // user operator', naming a user it had not sent (config QA). They are left out and said once
    const brokerUrl = config.mqtt.url ? withoutCredentials(config.mqtt.url, logger) : '';
    this.bus = config.mqtt.url
      ? new ExternalBroker({
          url: brokerUrl,
          username: OPERATOR_USERNAME,
          password: this.operatorToken,
          shareGroup: config.mqtt.shareGroup,
          logger: logger.child('mqtt'),
          // issue 9: $aws/things/... requests, which Mosquitto's shared subscriptions never deliver, go to one instance at a time
          exclusive: { filters: AWS_REQUEST_FILTERS, lease: config.db ? new PostgresAdvisoryLease({ url: config.db, name: 'aws-requests', logger: logger.child('lease'), connectTimeoutMs: config.postgres.connectTimeoutSeconds * 1000, queryTimeoutMs: config.postgres.leaseTimeoutSeconds * 1000 }) : new InProcessLease() },
        })
      : this.broker;
    const credentials = new CredentialService({
      store: this.store,
      tokens,
      publish: (topic, payload) => this.bus.publish(topic, payload, 1),
      ttlSeconds: config.downloads.tokenTtlSeconds,
      logger: logger.child('credentials'),
    });
    // devices authenticated by certificate renew them before they expire (pki/certificate-renewal.ts)
    const renewal = new CertificateRenewal({ store: this.store, ca: security.ca, publish: (topic, payload) => this.bus.publish(topic, payload, 1), logger: logger.child('pki') });
    // devices' logs of failed jobs (jobs/job-logs.ts)
    const jobLogs = new JobLogService({ store: this.store, events, publish: (topic, payload) => this.bus.publish(topic, payload, 1), logger: logger.child('jobs'), maxPerJob: config.jobs.maxLogsPerJob });
    this.bus.onPresence((e) => {
      if (e.online) this.online.add(e.deviceId);
      else this.online.delete(e.deviceId);
      events.emit('device.presence', e);
    });
    const commands = new UpdateCommands({
      store: this.store,
      urls,
      manifests: security.manifests,
      ttlSeconds: config.downloads.urlTtlSeconds,
      // the configuration refuses ipBinding with an external broker: this one sees the connections
      ...(config.downloads.ipBinding === 'mqtt' ? { addressOf: (deviceId: string) => this.broker.addressOf(deviceId) } : {}),
    });
    // issue 9: the AWS IoT shadow and jobs topic families, doors onto the same replica and job engine
    // a thing new here is announced (the relay tells the other instances); one new there is marked here
    const awsThings = new AwsThings({ onNew: (thing) => events.emit('aws.thing', { thing }) });
    events.on('aws.thing', ({ thing }) => awsThings.mark(thing));
    const awsShadow = new AwsShadowDoor({ things: awsThings });
    let awsJobs: AwsJobsDoor | undefined;
    this.broker.onSubscription((_sender, filter) => {
      const thing = awsThingOf(filter);
      if (thing !== undefined) awsThings.mark(thing);
    });
    // behind an external broker, which may admit a revoked device by its certificate
    // (mosquitto-config --updraft-ca), its requests are refused from memory: its shadow requests
    // by the replica (403), the others here, unanswered; started before the first request
    let requests = withCertificateRenewal(withCredentials(this.bus, credentials), renewal);
    let withdrawn: RevokedDevices | undefined;
    if (config.mqtt.url) {
      const revoked = new RevokedDevices({ store: this.store, events, logger: logger.child('registry') });
      await this.startPart({ start: () => revoked.start(), stop: async () => revoked.stop() });
      withdrawn = revoked;
      requests = refuseWithdrawn(requests, revoked, logger.child('broker'));
    }
    this.replica = new ShadowReplica({
      store: this.store,
      bus: withAwsDoors(withJobLogs(requests, jobLogs), { shadow: awsShadow, jobs: (msg) => awsJobs?.handle(msg) }),
      events,
      logger: logger.child('replica'),
      limits: { maxDocumentBytes: config.shadow.maxDocumentBytes, maxDepth: config.shadow.maxDepth },
      maxPending: config.shadow.maxPending,
      maxNamedShadows: config.shadow.maxNamedShadows,
      issueCommand: (deviceId, sw) => commands.issue(deviceId, sw),
      // operators (MQTT, rollouts) create shadows for registered devices only: a later
      // registration of the id would inherit the shadow and its command
      isRegistered: async (deviceId) => (await this.store.getDevice(deviceId)) !== undefined,
      ...(withdrawn ? { withdrawn } : {}),
    });
    // the replica subscribes to the bus before the broker accepts the first device
    await this.startPart(this.replica);
    this.tracker = new ExecutionTracker({ store: this.store, events, logger: logger.child('jobs'), ...(clock ? { now: clock.now } : {}) });
    await this.startPart(this.tracker);
    awsJobs = new AwsJobsDoor({ store: this.store, replica: this.replica, tracker: this.tracker, events, things: awsThings, publish: (topic, payload) => this.bus.publish(topic, payload, 1), wanted: (topic) => this.bus.hasSubscribers?.(topic) !== false, logger: logger.child('aws-jobs') });
    await this.startPart(awsJobs);
    const isOnline = (id: string) => this.online.has(id);
    // instances sharing a PostgreSQL database take turns driving rollouts (docs/design.md §7)
    const lease = config.db ? new PostgresAdvisoryLease({ url: config.db, name: 'rollouts', logger: logger.child('lease'), connectTimeoutMs: config.postgres.connectTimeoutSeconds * 1000, queryTimeoutMs: config.postgres.leaseTimeoutSeconds * 1000 }) : undefined;
    /** The re-send pass on each lead taken, behind an external broker (set once DisruptionResync is started, below). */
    let leadPass: DisruptionResync | undefined;
    this.rollouts = new Rollouts({ store: this.store, events, replica: this.replica, artifacts: this.artifacts, tracker: this.tracker, logger: logger.child('rollouts'), isOnline, onlineCount: () => this.online.size, engine: { ...(lease ? { lease } : {}), ...(clock ? { now: clock.now } : {}), monotonic: () => performance.now(), arrivals: config.mqtt.url ? 'fetch' : 'presence', artifactStorage: () => probeBlobStore(blobs), mqttConnected: () => !(this.bus instanceof ExternalBroker) || this.bus.connected, ...(config.mqtt.url ? { onLead: () => leadPass?.leadTaken() } : {}) }, retention: { days: config.jobs.retentionDays } });
    this.deployments = this.rollouts.deployments;
    await this.startPart(this.bus);
    // the server certificate renewed and swapped in while running, the CA's end warned of (server-tls-renewal.ts)
    const hosts = config.tls.hosts.split(',').map((h) => h.trim()).filter((h) => h !== '');
    const listeners: TlsListener[] = [];
    if (security.mqttTls && !config.mqtt.url) listeners.push({ what: 'mqtt', tls: security.mqttTls, certFile: config.mqtt.tlsCert, keyFile: config.mqtt.tlsKey, apply: (t) => this.broker.setTls(t) });
    if (security.httpTls) listeners.push({ what: 'http', tls: security.httpTls, certFile: config.http.tlsCert, keyFile: config.http.tlsKey, apply: (t) => this.http.setTls(t) });
    this.tlsRenewal = new ServerTlsRenewal({ dataDir, ca: security.ca, hosts, listeners, logger: logger.child('security') });
    await this.startPart(this.tlsRenewal);
    // the operator's own certificate files, renewed in place (certbot, cert-manager), served without a restart
    this.tlsReload = new OperatorTlsReload({ listeners, logger: logger.child('security'), intervalMs: config.tls.reloadSeconds * 1000 });
    await this.startPart(this.tlsReload);
    // several instances on one external broker: every instance's live views see all events
    const relay = config.mqtt.url ? new EventRelay({ url: brokerUrl, username: OPERATOR_USERNAME, password: this.operatorToken, events, logger: logger.child('events') }) : undefined;
    if (relay) await this.startPart(relay);
    // rollout state changes to the operator's endpoint, from the instance that drives rollouts
    let webhook: WebhookNotifier | undefined;
    if (config.webhook.url) {
      const engine = this.rollouts.engine;
      // a change's age is judged by the clock its time was stamped by (the cluster's)
      webhook = new WebhookNotifier({ events, store: this.store, url: config.webhook.url, secret: config.webhook.secret, previousSecret: config.webhook.previousSecret, isLeader: () => engine.isLeader, logger: logger.child('webhook'), ...(clock ? { now: clock.now } : {}) });
      await this.startPart(webhook);
    }
    // after the bus: recovery and the first tick may send commands
    await this.startPart(this.rollouts);
    // deleted devices' shadow tombstones, after shadow.tombstoneRetentionHours, by the instance leading rollouts
    const leading = this.rollouts.engine;
    await this.startPart(new TombstoneRetention({ store: this.store, isLeader: () => leading.isLeader, hours: config.shadow.tombstoneRetentionHours, logger: logger.child('shadow'), ...(clock ? { now: clock.now } : {}) }));
    // after the database went back (PostgreSQL's onDisruption), the instance leading rollouts
    // sends the commands of open executions again: a device whose report the restore lost answers
    const resync = new DisruptionResync({ store: this.store, replica: this.replica, isLeader: () => leading.isLeader, logger: logger.child('jobs') });
    await this.startPart(resync);
    if (config.mqtt.url) {
      // behind an external broker devices keep their connections across instances' restarts:
      // the same pass when this instance comes to lead (a database restored while no instance
      // ran is no disruption any instance sees). With the embedded broker every device
      // reconnects to the started instance and asks with get: no pass (docs/deployment.md)
      if (leading.isLeader) resync.leadTaken();
      leadPass = resync;
    }

    const deviceRefusal = async (id: string, issuedAt?: number) => {
      const d = await this.store.getDevice(id);
      if (!d) return 'device is not registered';
      if (d.revoked) return 'device revoked';
      // a URL or token of a device deleted since, whose id was registered again: it is the
      // earlier device's (certificates are bound to the registration the same way)
      if (issuedAt !== undefined && d.createdAt > issuedAt + REGISTRATION_MARGIN_MS) return 'issued to an earlier registration of this device id (deleted since); ask for a fresh one';
      return undefined;
    };
    const downloadStats: DownloadStats = { served: 0, refused: 0, bytes: 0, cut: 0, unavailable: 0, missing: 0 };
    // a device revoked or deleted, here or on another instance (the relay brings its
    // device.credentials), loses the downloads it has in progress here
    const activeDownloads = new ActiveDownloads({ events, refusal: deviceRefusal, logger: logger.child('download'), cutAfterWritten: () => downloadStats.cut++ });
    await this.startPart(activeDownloads);
    router.add('GET', '/v1/download/:name/:version', downloadRoute({ artifacts: this.artifacts, blobs, signer, tokens, deviceRefusal, active: activeDownloads, cache, storage: artifactStorage, stats: downloadStats, logger: logger.child('download') }));
    addBrokerRoutes(router, { registry: this.registry, store: this.store, dataDir, logger: logger.child('broker') });
    addNamedTokenRoutes(router, [viewerTokens, operatorTokens]);
    // a leaked operator token is replaced without a restart (docs/security.md)
    router.add('POST', '/api/v1/operator-token/rotate', async ({ res, caller }) => {
      // the answer is the new shared token, the operators' MQTT password too, which named
      // tokens do not have (they are removed alone): one could take it and keep it after
      // its own removal. Rotated with the operator token itself (even a leaked one: it is
      // valid until replaced), or offline
      if (caller?.name !== undefined) {
        throw new UpdraftError('FORBIDDEN', `the operator token is replaced with itself, not with a named token (${caller.role} ${caller.name}): its answer is the new shared token, the MQTT password that named tokens do not have; run updraft token rotate with --token <the operator token> (or --data-dir of the server), or offline on a stopped server`);
      }
      if (config.mqtt.url) {
        // rotating in each data directory would give each instance a token of its own: one is made, then copied
        throw new UpdraftError('CONFLICT', "with an external broker every instance and the broker share the operator token, so it is not replaced online: rotate it once, offline, in one data directory (updraft token rotate --offline --data-dir <dir> --db <url>), copy that operator-token file into every instance's data directory (do not rotate in each: each would get a token of its own), regenerate the broker's password file (updraft broker mosquitto-config --offline), then restart the instances (docs/security.md)");
      }
      const next = await replaceOperatorToken(dataDir);
      this.operatorToken = next;
      this.http.setOperatorToken(next);
      authenticator.setOperatorToken(next);
      const disconnected = this.broker.cutOffOperators();
      events.emit('operator.token-rotated', {});
      // instances on this database compare their token with this one from now on
      await this.sharedSecrets?.record(['operator-token']).catch((err: unknown) => logger.warn('the new operator token is not recorded in the store yet: it is at the next comparison, within 30 s', { error: (err as Error).message }));
      logger.warn('the operator token was replaced: the old one is refused from now on', { operatorConnectionsClosed: disconnected });
      sendJson(res, 200, { token: next, disconnected });
    });
    addSecurityRoutes(router, { dataDir, registry: this.registry, store: this.store, ca: security.ca, signingKey: security.signingKey, manifests: security.manifests, urlKeys, sharedStore: config.db !== '', logger: logger.child('security'), certificateExpiry, onCertificateInstalled: (installed) => sharedCertificate.publish(installed), onUrlKeysChanged: async () => this.sharedSecrets?.record(['url-signing-keys']) });
    addApiRoutes(router, {
      store: this.store,
      replica: this.replica,
      artifacts: this.artifacts,
      deployments: this.deployments,
      tracker: this.tracker,
      registry: this.registry,
      events,
      isOnline: (id) => this.online.has(id),
      checkArtifactSignature: (a, signature) => security.manifests.checkArtifact(a, signature),
    });
    this.rollouts.addRoutes(router);
    const bus = this.bus;
    const readiness = new ReadinessProbe({ store: this.store, blobs, ...(blobs instanceof LocalBlobStore ? { artifactsWritable: () => blobs.whyNotWritable() } : {}), busConnected: () => (bus instanceof ExternalBroker ? bus.connected : true), stopping: () => this.stopping, logger: logger.child('readyz') });
    router.add('GET', '/readyz', async ({ res }) => {
      const r = await readiness.check();
      sendJson(res, r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks: r.checks });
    });
    const loop = new EventLoopMonitor();
    await this.startPart(loop);
    const metrics: MetricsSource = () => ({
      mqtt: { published: this.broker.stats.published, connectedClients: this.broker.connectedClients, onlineDevices: this.online.size, refusedConnections: this.broker.stats.refusedConnections, refusedAtFileLimit: this.broker.stats.refusedAtFileLimit },
      shadow: { requests: this.replica.stats.requests, rejections: Object.fromEntries(this.replica.stats.rejections) },
      downloads: { ...downloadStats },
      storage: { store: config.db ? 'postgres' : 'embedded', artifacts: config.blob ? 's3' : 'local' },
      rollouts: { leader: leading.isLeader },
      api: { ...this.http.stats },
      webhook: webhook ? { ...webhook.stats } : null,
      eventRelay: relay ? { dropped: relay.dropped, undeliverable: relay.undeliverable } : null,
      signing: { certificateExpiresAt: security.manifests.certificate?.expiresAt ?? null, certificateSerial: security.manifests.certificate?.serial ?? null },
      tls: this.tlsRenewal.expiries(),
      process: { ...processMemory(), uptimeSeconds: process.uptime(), databaseClockOffsetMs: this.clusterClock?.offsetMs ?? null },
      eventLoop: loop.figures(),
    });
    addFleetRoutes(router, { registry: this.registry, metrics });
    // doctor's fleet-level findings for the dashboard, computed here (http/health-routes.ts)
    addHealthRoutes(router, { store: this.store, metrics, keys: () => readKeyFacts({ dataDir, signingKey: security.signingKey, manifests: security.manifests, ca: security.ca }) });
    // the web dashboard at / and the aggregations its pages read (issue 8)
    await this.startPart(new Dashboard({ router, store: this.store, events, rollouts: this.rollouts, tracker: this.tracker, isOnline, logger: logger.child('dashboard') }));
    // last: the secrets are recorded for the instances after this one only once this one has
    // started (the broker admitted its token), then compared every 30 s
    if (config.db) {
      this.sharedSecrets = new SharedSecrets({ store: this.store, dataDir, values: secretValues, logger: logger.child('security') });
      await this.startPart(this.sharedSecrets);
    }
    this.http.routesComplete();
  }

  /** From now on /readyz answers 503 `stopping`; the instance goes on serving until stop(). */
  beginStopping(): void {
    this.stopping = true;
  }

  /** While stop() runs: the part whose stop it waits for (its class name), for a stop that takes too long. */
  get stopWaitingFor(): string | undefined {
    return this.stoppingPart;
  }

  /** Stops every started part in reverse order; safe to call twice. */
  async stop(): Promise<void> {
    this.stopping = true;
    const parts = this.started.reverse();
    this.started = [];
    for (const part of parts) {
      this.stoppingPart = part.constructor.name;
      try {
        await part.stop();
      } catch (err) {
        this.logger.error('stop failed', { error: (err as Error).message });
      }
    }
    this.stoppingPart = undefined;
  }
}

/**
 * The external broker's URL without a user name or password, saying so (WARN) when it had
 * them: the instance connects as the operator with its token (docs/deployment.md).
 */
function withoutCredentials(url: string, logger: Logger): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url; // the configuration checked it: a URL
  }
  if (u.username === '' && u.password === '') return url;
  u.username = '';
  u.password = '';
  logger.warn(`mqtt.url carries a user name or password, which are not used: the server connects to the broker as ${OPERATOR_USERNAME} with its operator token (docs/deployment.md); take them out of the URL`);
  return u.toString();
}

/** The process's memory as `GET /api/v1/metrics` says it (one memoryUsage() call: it walks the heap's spaces). */
function processMemory(): { rssBytes: number; heapUsedBytes: number; heapTotalBytes: number; externalBytes: number } {
  const m = process.memoryUsage();
  return { rssBytes: m.rss, heapUsedBytes: m.heapUsed, heapTotalBytes: m.heapTotal, externalBytes: m.external };
}
