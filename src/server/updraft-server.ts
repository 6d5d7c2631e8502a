/**
 * The composition root (STYLE.md habit 3): builds every part from the validated config,
 * wires them through one deps object each, starts them in dependency order and stops them
 * in reverse. Embedded topology: aedes broker, replica, jobs, HTTP API + downloads, SQLite
 * store and a local artifact directory, all in this process.
 */
import path from 'node:path';
import { ArtifactService } from '../artifacts/artifact-service.ts';
import { loadOrCreateKeyRing } from '../artifacts/key-ring.ts';
import { LocalBlobStore } from '../artifacts/local-blob-store.ts';
import { UrlSigner } from '../artifacts/url-signer.ts';
import { RegistryAuthenticator } from '../broker/registry-authenticator.ts';
import { EmbeddedBroker } from '../broker/embedded-broker.ts';
import type { UpdraftConfig } from '../config/schema.ts';
import { EventBus } from '../events/event-bus.ts';
import { addApiRoutes } from '../http/api-routes.ts';
import { downloadRoute } from '../http/download-route.ts';
import { addFleetRoutes } from '../http/fleet-routes.ts';
import { HttpServer } from '../http/http-server.ts';
import { Router } from '../http/router.ts';
import { DeploymentService } from '../jobs/deployment-service.ts';
import { ExecutionTracker } from '../jobs/execution-tracker.ts';
import { DeviceRegistry } from '../registry/device-registry.ts';
import { ShadowReplica } from '../shadow/replica.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { Logger } from '../util/logger.ts';
import { loadOrCreateOperatorToken } from './operator-token.ts';

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
  /** True when start() generated the operator token (it is printed once). */
  tokenCreated = false;
  broker!: EmbeddedBroker;
  http!: HttpServer;
  replica!: ShadowReplica;
  store!: SqliteStore;
  artifacts!: ArtifactService;
  deployments!: DeploymentService;
  tracker!: ExecutionTracker;
  registry!: DeviceRegistry;

  constructor(config: UpdraftConfig, deps: { logger: Logger }) {
    this.config = config;
    this.logger = deps.logger;
  }

  /** URL devices and the CLI use to reach the HTTP server. */
  get publicUrl(): string {
    return this.config.http.publicUrl || `http://127.0.0.1:${this.http.port}`;
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
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { config, logger, events } = this;
    const dataDir = path.resolve(config.dataDir);
    const token = await loadOrCreateOperatorToken(dataDir);
    this.operatorToken = token.token;
    this.tokenCreated = token.created;

    this.store = new SqliteStore({ path: path.join(dataDir, 'updraft.db'), logger: logger.child('store') });
    await this.startPart(this.store);
    const blobs = new LocalBlobStore({ dir: path.join(dataDir, 'artifacts') });
    await this.startPart(blobs);
    this.registry = new DeviceRegistry({ store: this.store });
    this.artifacts = new ArtifactService({ store: this.store, blobs, maxArtifactBytes: config.downloads.maxArtifactBytes });

    const router = new Router();
    this.http = new HttpServer({ port: config.http.port, host: config.http.host, router, operatorToken: this.operatorToken, logger: logger.child('http') });
    await this.startPart(this.http);
    const signer = new UrlSigner({ keys: await loadOrCreateKeyRing(dataDir), baseUrl: this.publicUrl });

    this.broker = new EmbeddedBroker({
      port: config.mqtt.port,
      host: config.mqtt.host,
      authenticator: new RegistryAuthenticator({ store: this.store, operatorToken: this.operatorToken, logger: logger.child('auth') }),
      logger: logger.child('mqtt'),
    });
    this.broker.onPresence((e) => {
      if (e.online) this.online.add(e.deviceId);
      else this.online.delete(e.deviceId);
      events.emit('device.presence', e);
    });
    const ttl = config.downloads.urlTtlSeconds;
    this.replica = new ShadowReplica({
      store: this.store,
      bus: this.broker,
      events,
      logger: logger.child('replica'),
      limits: { maxDocumentBytes: config.shadow.maxDocumentBytes, maxDepth: config.shadow.maxDepth },
      maxPending: config.shadow.maxPending,
      issueCommand: (deviceId, sw) => {
        const urlExpiresAt = Math.floor(Date.now() / 1000) + ttl;
        return { ...sw, url: signer.sign({ deviceId, name: sw.name, version: sw.version, sha256: sw.sha256, expiresAt: urlExpiresAt }), urlExpiresAt };
      },
    });
    // the replica subscribes to the bus before the broker accepts the first device
    await this.startPart(this.replica);
    this.tracker = new ExecutionTracker({ store: this.store, events, logger: logger.child('jobs') });
    await this.startPart(this.tracker);
    this.deployments = new DeploymentService({ store: this.store, replica: this.replica, artifacts: this.artifacts, registry: this.registry });
    await this.startPart(this.broker);

    router.add('GET', '/v1/download/:name/:version', downloadRoute({ artifacts: this.artifacts, blobs, signer, logger: logger.child('download') }));
    addApiRoutes(router, {
      store: this.store,
      replica: this.replica,
      artifacts: this.artifacts,
      deployments: this.deployments,
      tracker: this.tracker,
      registry: this.registry,
      isOnline: (id) => this.online.has(id),
    });
    addFleetRoutes(router, {
      registry: this.registry,
      metrics: () => ({
        mqtt: { published: this.broker.stats.published, connectedClients: this.broker.connectedClients, onlineDevices: this.online.size },
        process: { rssBytes: process.memoryUsage().rss, uptimeSeconds: process.uptime() },
      }),
    });
  }

  /** Stops every started part in reverse order; safe to call twice. */
  async stop(): Promise<void> {
    const parts = this.started.reverse();
    this.started = [];
    for (const part of parts) {
      try {
        await part.stop();
      } catch (err) {
        this.logger.error('stop failed', { error: (err as Error).message });
      }
    }
  }
}
