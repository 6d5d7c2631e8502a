/**
 * Named tokens of the operator API, for people and tools, beside the one operator token of
 * the data directory (which is also the broker's `operator` password).
 *
 * **Viewer tokens** (read-only): for what must read the fleet and must not change it.
 * Prometheus scraping `/api/v1/metrics`, a wall dashboard, a support desk looking up a
 * device, a CI job waiting for a rollout. Giving them the operator token would let each of
 * them push software to every device.
 *
 * - A viewer token may call what reads: GET and HEAD (the event stream included) and a
 *   job's dry run. Everything else is refused with 403, as are the reads that hand out
 *   secrets: the broker's password hashes (`/api/v1/broker/credentials`) and the token lists.
 *
 * **Named operator tokens**: one per person (or per automation) who operates the fleet,
 * with the operator token's rights over the API, so that the audit log says who did what
 * (`by="operator alice"`), and someone who leaves loses access when their token is removed,
 * without replacing the shared token in every tool, instance and broker.
 *
 * Both kinds:
 * - are no MQTT password: the broker knows only devices and the data directory's operator;
 * - are named (`updraft token viewer add prometheus`, `updraft token operator add alice`),
 *   and may expire (`--expires-in 30d`, for a contractor or a demo: refused from then on,
 *   listed as expired until removed). The token is shown once. The store keeps its SHA-256,
 *   not the token: it is 192 random bits, so a hash is as good as a password hash and is
 *   checked in a map lookup;
 * - are kept in the store's shared settings (`viewer-token:<name>`, `operator-token:<name>`),
 *   so every instance knows every token. An instance reads them again when another one says
 *   it changed them (the relayed `viewer.tokens` or `operator.tokens` event), and every 30 s
 *   anyway, since events are not durable: a removed token is refused at once on the instance
 *   that removed it, and everywhere else within 30 s at worst. Streams opened with it end.
 */
import { createHash, randomBytes } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { readJson, sendJson } from '../http/respond.ts';
import type { Router } from '../http/router.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { refuseUnknownFields } from '../protocol/known-fields.ts';

/** The kinds of named tokens: what each may do is decided by `http-server.ts`. */
export type TokenRole = 'viewer' | 'operator';

/** Per kind: the key prefix in the store's shared settings, the relayed event, the token's own prefix, and its name in messages. */
const KINDS = {
  viewer: { key: 'viewer-token:', event: 'viewer.tokens', prefix: 'updr_view_', label: 'viewer token' },
  operator: { key: 'operator-token:', event: 'operator.tokens', prefix: 'updr_oper_', label: 'named operator token' },
} as const;

/** At most this many tokens of each kind (each is looked up in memory by every instance). */
export const MAX_NAMED_TOKENS = 100;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A named token as listed: never the token itself. */
export interface NamedTokenInfo {
  name: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** When it stops being taken (ms since the epoch); absent: never. */
  expiresAt?: number;
  /** When it was last taken by any instance (ms since the epoch, to within the instances' 30 s reads); absent: never. */
  lastUsedAt?: number;
  /**
   * Who added it: `operator` (the data directory's token) or `operator <name>` (a named
   * operator token). A named operator may add tokens: whoever removes one sees what it added,
   * and removes those too if need be.
   */
  createdBy?: string;
}

/** Longest lifetime of a named token given `expiresInSeconds`: ten years. */
const MAX_EXPIRES_IN_SECONDS = 10 * 365 * 86_400;

/** What the tokens need. */
export interface NamedTokenDeps {
  /** Which kind these are. */
  role: TokenRole;
  store: StateStore;
  /** `viewer.tokens` / `operator.tokens` tells the other instances (relayed) to read the tokens again. */
  events: EventBus;
  logger: Logger;
  /** How often the store is read anyway, in ms (default 30 s). */
  intervalMs?: number;
}

const sha256 = (token: string) => createHash('sha256').update(token).digest('hex');

/** The named tokens of one kind, of every instance on this store. */
export class NamedTokens {
  readonly role: TokenRole;
  private readonly deps: NamedTokenDeps;
  private readonly kind: (typeof KINDS)[TokenRole];
  /** SHA-256 (hex) of each token → its name, and when it expires. */
  private byHash = new Map<string, { name: string; expiresAt?: number }>();
  /** Uses on this instance not written to the store yet: name → when (ms). */
  private used = new Map<string, number>();
  private infos: NamedTokenInfo[] = [];
  private timer: NodeJS.Timeout | undefined;
  private off: (() => void) | undefined;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(deps: NamedTokenDeps) {
    this.deps = deps;
    this.role = deps.role;
    this.kind = KINDS[deps.role];
  }

  async start(): Promise<void> {
    await this.reload();
    this.off = this.deps.events.on(this.kind.event, () => void this.reload().catch(() => {}));
    this.timer = setInterval(() => void this.reload().catch(() => {}), this.deps.intervalMs ?? 30_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.off?.();
    await this.turn.catch(() => {});
    await this.flushUses().catch(() => {});
  }

  /** The token `token` is (its name and expiry), or undefined (none, or expired). Its use is noted (in memory; written with the next read). */
  match(token: string, now = Date.now()): { name: string; expiresAt?: number } | undefined {
    const found = this.byHash.size === 0 ? undefined : this.byHash.get(sha256(token));
    if (!found || (found.expiresAt !== undefined && now >= found.expiresAt)) return undefined;
    this.used.set(found.name, now);
    return found;
  }

  /** The token `token` was, when it is one of these and has expired (so a refusal can say so), or undefined. */
  expired(token: string, now = Date.now()): { name: string; expiresAt: number } | undefined {
    const found = this.byHash.size === 0 ? undefined : this.byHash.get(sha256(token));
    return found?.expiresAt !== undefined && now >= found.expiresAt ? { name: found.name, expiresAt: found.expiresAt } : undefined;
  }

  /**
   * Writes the uses noted since the last time, one setting per token
   * (`token-used:<role>:<name>`, apart from the token's own, so that a use written late never
   * brings back a removed token), keeping the later time of this instance's and the store's.
   * The token's creation time goes with it: a token added again under the same name starts
   * unused. A write per token used, at most every 30 s: no write per request.
   */
  private async flushUses(): Promise<void> {
    if (this.used.size === 0) return;
    const uses = this.used;
    this.used = new Map();
    const created = new Map(this.infos.map((i) => [i.name, i.createdAt]));
    for (const [name, at] of uses) {
      const createdAt = created.get(name);
      if (createdAt === undefined) continue; // removed meanwhile
      const key = this.usedKey(name);
      const before = parseUse(await this.deps.store.getSetting(key));
      if (before && before.createdAt === createdAt && before.at >= at) continue;
      await this.deps.store.putSetting(key, JSON.stringify({ at, createdAt }));
    }
  }

  private usedKey(name: string): string {
    return `token-used:${this.role}:${name}`;
  }

  /** The tokens, by name. */
  list(): NamedTokenInfo[] {
    return this.infos.map((i) => ({ ...i }));
  }

  /** A new token named `name`, valid for `expiresInSeconds` when given (shown once: only its hash is kept). */
  async add(name: string, expiresInSeconds?: number, createdBy?: string): Promise<{ name: string; token: string; createdAt: number; expiresAt?: number }> {
    const k = this.kind;
    if (!NAME.test(name)) throw new UpdraftError('BAD_REQUEST', `a ${k.label} name is 1 to 64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit`);
    if (expiresInSeconds !== undefined && !(Number.isSafeInteger(expiresInSeconds) && expiresInSeconds > 0 && expiresInSeconds <= MAX_EXPIRES_IN_SECONDS)) {
      throw new UpdraftError('BAD_REQUEST', `expiresInSeconds must be a whole number of seconds from 1 to ${MAX_EXPIRES_IN_SECONDS} (ten years)`);
    }
    await this.reload();
    if (this.infos.length >= MAX_NAMED_TOKENS) throw new UpdraftError('CONFLICT', `there are already ${MAX_NAMED_TOKENS} ${k.label}s: remove one first`);
    const token = `${k.prefix}${randomBytes(24).toString('base64url')}`;
    const createdAt = Date.now();
    const expiresAt = expiresInSeconds === undefined ? undefined : createdAt + expiresInSeconds * 1000;
    const record = { sha256: sha256(token), createdAt, ...(expiresAt !== undefined ? { expiresAt } : {}), ...(createdBy !== undefined ? { createdBy } : {}) };
    if (!(await this.deps.store.addSetting(k.key + name, JSON.stringify(record)))) {
      throw new UpdraftError('CONFLICT', `a ${k.label} named ${name} exists: remove it first (updraft token ${this.role} remove ${name})`);
    }
    await this.changed(name);
    this.deps.logger.info(`${k.label} added`, { name, ...(expiresAt !== undefined ? { expiresAt: new Date(expiresAt).toISOString() } : {}), ...(createdBy !== undefined ? { by: createdBy } : {}) });
    return { name, token, createdAt, ...(expiresAt !== undefined ? { expiresAt } : {}) };
  }

  /** Removes the token named `name`: refused from now on here, within 30 s on every instance. */
  async remove(name: string): Promise<void> {
    if (!(await this.deps.store.deleteSetting(this.kind.key + name))) throw new UpdraftError('NOT_FOUND', `no ${this.kind.label} is named ${name}`);
    this.used.delete(name);
    await this.deps.store.deleteSetting(this.usedKey(name));
    await this.changed(name);
    this.deps.logger.info(`${this.kind.label} removed: it is refused from now on`, { name });
  }

  /** Reads the tokens from the store again, one read at a time. */
  reload(): Promise<void> {
    const run = this.turn.then(async () => {
      await this.flushUses();
      await this.read();
    });
    this.turn = run.catch((err: unknown) => this.deps.logger.warn(`could not read the ${this.kind.label}s; trying again later`, { error: (err as Error).message }));
    return run;
  }

  private async read(): Promise<void> {
    const byHash = new Map<string, { name: string; expiresAt?: number }>();
    const infos: NamedTokenInfo[] = [];
    const uses = new Map<string, { at: number; createdAt: number }>();
    for (const { key, value } of await this.deps.store.listSettings(this.usedKey(''))) {
      const use = parseUse(value);
      if (use) uses.set(key.slice(this.usedKey('').length), use);
    }
    for (const { key, value } of await this.deps.store.listSettings(this.kind.key)) {
      const name = key.slice(this.kind.key.length);
      try {
        const raw = JSON.parse(value) as { sha256?: unknown; createdAt?: unknown; expiresAt?: unknown; createdBy?: unknown };
        if (typeof raw.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(raw.sha256)) throw new Error('no SHA-256');
        if (raw.expiresAt !== undefined && typeof raw.expiresAt !== 'number') throw new Error('an expiry that is not a time');
        const expiresAt = raw.expiresAt as number | undefined;
        byHash.set(raw.sha256, { name, ...(expiresAt !== undefined ? { expiresAt } : {}) });
        const createdAt = typeof raw.createdAt === 'number' ? raw.createdAt : 0;
        const use = uses.get(name);
        const lastUsedAt = Math.max(use && use.createdAt === createdAt ? use.at : 0, this.used.get(name) ?? 0);
        infos.push({ name, createdAt, ...(expiresAt !== undefined ? { expiresAt } : {}), ...(lastUsedAt > 0 ? { lastUsedAt } : {}), ...(typeof raw.createdBy === 'string' ? { createdBy: raw.createdBy } : {}) });
      } catch (err) {
        this.deps.logger.warn(`a ${this.kind.label} in the store is unreadable and refused; remove it and add it again`, { name, error: (err as Error).message });
      }
    }
    this.byHash = byHash;
    this.infos = infos;
  }

  /** After a change made here: taken in at once, and the other instances told. */
  private async changed(name: string): Promise<void> {
    await this.reload();
    this.deps.events.emit(this.kind.event, { name });
  }
}

/** A use record (`token-used:...`), or undefined when there is none or it is unreadable. */
function parseUse(value: string | undefined): { at: number; createdAt: number } | undefined {
  if (value === undefined) return undefined;
  try {
    const raw = JSON.parse(value) as { at?: unknown; createdAt?: unknown };
    return typeof raw.at === 'number' && typeof raw.createdAt === 'number' ? { at: raw.at, createdAt: raw.createdAt } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `GET /api/v1/viewer-tokens` and `/api/v1/operator-tokens` (names and dates), `POST` `{name,
 * expiresInSeconds?}` (the token, shown once), `DELETE .../:name`: the operators' only
 * (`http-server.ts`). And `GET /api/v1/whoami`, for anyone with a token: `{role: "operator"}`
 * (the data directory's token), `{role: "operator", name}` or `{role: "viewer", name}`.
 */
export function addNamedTokenRoutes(router: Router, kinds: readonly NamedTokens[]): void {
  // who the token is: the dashboard hides what a viewer may not do
  router.add('GET', '/api/v1/whoami', async ({ res, caller }) => sendJson(res, 200, caller ?? { role: 'operator' }));
  for (const tokens of kinds) {
    const base = `/api/v1/${tokens.role}-tokens`;
    router.add('GET', base, async ({ res }) => {
      await tokens.reload();
      sendJson(res, 200, { items: tokens.list() });
    });
    router.add('POST', base, async ({ req, res, caller, audit }) => {
      const body = await readJson(req, 4096);
      // a misspelt field must not be dropped: {"expiresIn": 60} made a token that never expires
      refuseUnknownFields(body, ['name', 'expiresInSeconds']);
      const { name, expiresInSeconds } = body;
      if (typeof name !== 'string') throw new UpdraftError('BAD_REQUEST', `the body must be {"name": "<${KINDS[tokens.role].label} name>", "expiresInSeconds"?: <seconds>}`);
      if (expiresInSeconds !== undefined && typeof expiresInSeconds !== 'number') throw new UpdraftError('BAD_REQUEST', 'expiresInSeconds must be a number of seconds');
      const by = caller === undefined || caller.name === undefined ? 'operator' : `${caller.role} ${caller.name}`;
      const added = await tokens.add(name, expiresInSeconds, by);
      audit.name = added.name; // its name, never the token
      sendJson(res, 201, added);
    });
    router.add('DELETE', `${base}/:name`, async ({ res, params }) => {
      await tokens.remove(params.name!);
      // what a removed operator added stays: said, so that it can go too
      const by = `operator ${params.name!}`;
      if (tokens.role === 'operator') await Promise.all(kinds.map((k) => k.reload()));
      const added = tokens.role === 'operator' ? kinds.flatMap((k) => k.list().filter((t) => t.createdBy === by).map((t) => ({ role: k.role, name: t.name }))) : [];
      sendJson(res, 200, { removed: params.name, added });
    });
  }
}
