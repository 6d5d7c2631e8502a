/**
 * Read-only tokens of the operator API ("viewer tokens"): for what must read the fleet and
 * must not change it. Prometheus scraping `/api/v1/metrics`, a wall dashboard, a support
 * desk looking up a device, a CI job waiting for a rollout. Giving them the operator token
 * would let each of them push software to every device.
 *
 * - A viewer token may call what reads: GET and HEAD (the event stream included) and a
 *   job's dry run. Everything else is refused with 403, as are the reads that hand out
 *   secrets: the broker's password hashes (`/api/v1/broker/credentials`) and the list of
 *   viewer tokens. It is no MQTT password: the broker knows only devices and the operator.
 * - Named, so that each user has its own and one can be removed without the others
 *   (`updraft token viewer add prometheus`), and may expire (`--expires-in 30d`, for a
 *   contractor or a demo: refused from then on, listed as expired until removed). The
 *   token is shown once. The store keeps its
 *   SHA-256, not the token: it is 192 random bits, so a hash is as good as a password hash
 *   and is checked in a map lookup.
 * - Kept in the store's shared settings (`viewer-token:<name>`), so every instance knows
 *   every token. An instance reads them again when another one says it changed them (the
 *   relayed `viewer.tokens` event), and every 30 s anyway, since events are not durable: a
 *   removed token is refused at once on the instance that removed it, and everywhere else
 *   within 30 s at worst. Streams opened with it end.
 */
import { createHash, randomBytes } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { readJson, sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';

/** Key prefix of the viewer tokens in the store's shared settings. */
export const VIEWER_TOKEN_KEY = 'viewer-token:';
/** At most this many viewer tokens (each is looked up in memory by every instance). */
export const MAX_VIEWER_TOKENS = 100;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A viewer token as listed: never the token itself. */
export interface ViewerTokenInfo {
  name: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** When it stops being taken (ms since the epoch); absent: never. */
  expiresAt?: number;
}

/** Longest lifetime of a viewer token given `expiresInSeconds`: ten years. */
const MAX_EXPIRES_IN_SECONDS = 10 * 365 * 86_400;

/** What the tokens need. */
export interface ViewerTokenDeps {
  store: StateStore;
  /** `viewer.tokens` tells the other instances (relayed) to read the tokens again. */
  events: EventBus;
  logger: Logger;
  /** How often the store is read anyway, in ms (default 30 s). */
  intervalMs?: number;
}

const sha256 = (token: string) => createHash('sha256').update(token).digest('hex');

/** The viewer tokens of every instance on this store. */
export class ViewerTokens {
  private readonly deps: ViewerTokenDeps;
  /** SHA-256 (hex) of each token → its name, and when it expires. */
  private byHash = new Map<string, { name: string; expiresAt?: number }>();
  private infos: ViewerTokenInfo[] = [];
  private timer: NodeJS.Timeout | undefined;
  private off: (() => void) | undefined;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(deps: ViewerTokenDeps) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    await this.reload();
    this.off = this.deps.events.on('viewer.tokens', () => void this.reload().catch(() => {}));
    this.timer = setInterval(() => void this.reload().catch(() => {}), this.deps.intervalMs ?? 30_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.off?.();
    await this.turn.catch(() => {});
  }

  /** The viewer token `token` is (its name and expiry), or undefined (none, or expired). */
  match(token: string, now = Date.now()): { name: string; expiresAt?: number } | undefined {
    const found = this.byHash.size === 0 ? undefined : this.byHash.get(sha256(token));
    return found && (found.expiresAt === undefined || now < found.expiresAt) ? found : undefined;
  }

  /** The tokens, by name. */
  list(): ViewerTokenInfo[] {
    return this.infos.map((i) => ({ ...i }));
  }

  /** A new viewer token named `name`, valid for `expiresInSeconds` when given (shown once: only its hash is kept). */
  async add(name: string, expiresInSeconds?: number): Promise<{ name: string; token: string; createdAt: number; expiresAt?: number }> {
    if (!NAME.test(name)) throw new UpdraftError('BAD_REQUEST', 'a viewer token name is 1 to 64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit');
    if (expiresInSeconds !== undefined && !(Number.isSafeInteger(expiresInSeconds) && expiresInSeconds > 0 && expiresInSeconds <= MAX_EXPIRES_IN_SECONDS)) {
      throw new UpdraftError('BAD_REQUEST', `expiresInSeconds must be a whole number of seconds from 1 to ${MAX_EXPIRES_IN_SECONDS} (ten years)`);
    }
    await this.reload();
    if (this.infos.length >= MAX_VIEWER_TOKENS) throw new UpdraftError('CONFLICT', `there are already ${MAX_VIEWER_TOKENS} viewer tokens: remove one first`);
    const token = `updr_view_${randomBytes(24).toString('base64url')}`;
    const createdAt = Date.now();
    const expiresAt = expiresInSeconds === undefined ? undefined : createdAt + expiresInSeconds * 1000;
    if (!(await this.deps.store.addSetting(VIEWER_TOKEN_KEY + name, JSON.stringify({ sha256: sha256(token), createdAt, ...(expiresAt !== undefined ? { expiresAt } : {}) })))) {
      throw new UpdraftError('CONFLICT', `a viewer token named ${name} exists: remove it first (updraft token viewer remove ${name})`);
    }
    await this.changed(name);
    this.deps.logger.info('viewer token added', { name, ...(expiresAt !== undefined ? { expiresAt: new Date(expiresAt).toISOString() } : {}) });
    return { name, token, createdAt, ...(expiresAt !== undefined ? { expiresAt } : {}) };
  }

  /** Removes the token named `name`: refused from now on here, within 30 s on every instance. */
  async remove(name: string): Promise<void> {
    if (!(await this.deps.store.deleteSetting(VIEWER_TOKEN_KEY + name))) throw new UpdraftError('NOT_FOUND', `no viewer token is named ${name}`);
    await this.changed(name);
    this.deps.logger.info('viewer token removed: it is refused from now on', { name });
  }

  /** Reads the tokens from the store again, one read at a time. */
  reload(): Promise<void> {
    const run = this.turn.then(() => this.read());
    this.turn = run.catch((err: unknown) => this.deps.logger.warn('could not read the viewer tokens; trying again later', { error: (err as Error).message }));
    return run;
  }

  private async read(): Promise<void> {
    const byHash = new Map<string, { name: string; expiresAt?: number }>();
    const infos: ViewerTokenInfo[] = [];
    for (const { key, value } of await this.deps.store.listSettings(VIEWER_TOKEN_KEY)) {
      const name = key.slice(VIEWER_TOKEN_KEY.length);
      try {
        const raw = JSON.parse(value) as { sha256?: unknown; createdAt?: unknown; expiresAt?: unknown };
        if (typeof raw.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(raw.sha256)) throw new Error('no SHA-256');
        if (raw.expiresAt !== undefined && typeof raw.expiresAt !== 'number') throw new Error('an expiry that is not a time');
        const expiresAt = raw.expiresAt as number | undefined;
        byHash.set(raw.sha256, { name, ...(expiresAt !== undefined ? { expiresAt } : {}) });
        infos.push({ name, createdAt: typeof raw.createdAt === 'number' ? raw.createdAt : 0, ...(expiresAt !== undefined ? { expiresAt } : {}) });
      } catch (err) {
        this.deps.logger.warn('a viewer token in the store is unreadable and refused; remove it and add it again', { name, error: (err as Error).message });
      }
    }
    this.byHash = byHash;
    this.infos = infos;
  }

  /** After a change made here: taken in at once, and the other instances told. */
  private async changed(name: string): Promise<void> {
    await this.reload();
    this.deps.events.emit('viewer.tokens', { name });
  }
}

/**
 * `GET /api/v1/viewer-tokens` (names and dates), `POST` `{name}` (the token, shown once),
 * `DELETE /api/v1/viewer-tokens/:name`: the operator's only (`http-server.ts`). And
 * `GET /api/v1/whoami`, for anyone with a token: `{role: "operator"}` or `{role: "viewer", name}`.
 */
export function addViewerTokenRoutes(router: Router, tokens: ViewerTokens): void {
  // who the token is: the dashboard hides what a viewer may not do
  router.add('GET', '/api/v1/whoami', async ({ res, caller }) => sendJson(res, 200, caller ?? { role: 'operator' }));
  router.add('GET', '/api/v1/viewer-tokens', async ({ res }) => {
    await tokens.reload();
    sendJson(res, 200, { items: tokens.list() });
  });
  router.add('POST', '/api/v1/viewer-tokens', async ({ req, res }) => {
    const { name, expiresInSeconds } = await readJson(req, 4096);
    if (typeof name !== 'string') throw new UpdraftError('BAD_REQUEST', 'the body must be {"name": "<viewer token name>", "expiresInSeconds"?: <seconds>}');
    if (expiresInSeconds !== undefined && typeof expiresInSeconds !== 'number') throw new UpdraftError('BAD_REQUEST', 'expiresInSeconds must be a number of seconds');
    sendJson(res, 201, await tokens.add(name, expiresInSeconds));
  });
  router.add('DELETE', '/api/v1/viewer-tokens/:name', async ({ res, params }) => {
    await tokens.remove(params.name!);
    sendJson(res, 200, { removed: params.name });
  });
}
