/**
 * The device registry: which devices exist, their attributes and tags (what groups and
 * queries select on), and their credential. Registration issues a secret, returned once.
 */
import { mosquittoPasswordHash } from '../broker/mosquitto-config.ts';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import type { CredentialsChange, EventBus } from '../events/event-bus.ts';
import { OPERATOR_USERNAME } from '../broker/authenticator.ts';
import { ID_RULE, idProblem, isValidId } from '../protocol/topics.ts';
import type { DeviceRecord, Page, StateStore } from '../store/state-store.ts';
import { startInSlices } from '../util/in-slices.ts';
import { hashDeviceSecret, newDeviceSecret } from './device-secret.ts';
import { refuseUnknownFields } from '../protocol/known-fields.ts';

/** Names of JavaScript's object machinery: never attribute names (they would shadow or reach prototypes). */
const RESERVED_NAMES = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * The most a device's attributes take, as JSON in UTF-8 (`{"site":"Zürich"}` is 18 bytes):
 * a real fleet's inventory (serials, sites, hardware revisions) fits many times over. They
 * are stored in the device's record and listed with every device, so without a bound each
 * PATCH under the 1 MiB body limit could add another megabyte: 20 made a 20 MB record and a
 * 20 MB first page of `GET /api/v1/devices`.
 */
export const MAX_ATTRIBUTES_BYTES = 16 * 1024;

/** The bytes `attributes` take as JSON in UTF-8. */
function attributesSize(attributes: Record<string, unknown>): number {
  return Buffer.byteLength(JSON.stringify(attributes));
}

/**
 * TOO_LARGE when `attributes` take more than MAX_ATTRIBUTES_BYTES as JSON, unless they take
 * no more than `before` (a record stored before the bound may still shrink step by step);
 * `verb` says what was asked ("give", "set").
 */
function checkAttributesSize(deviceId: string, attributes: Record<string, unknown>, verb: string, before = 0): void {
  const size = attributesSize(attributes);
  if (size <= MAX_ATTRIBUTES_BYTES || size <= before) return;
  throw new UpdraftError(
    'TOO_LARGE',
    `attributes of device ${deviceId} would take ${size} bytes as JSON; a device's attributes take at most ${MAX_ATTRIBUTES_BYTES} (16 KiB): ${verb} fewer or shorter ones (a null value removes a key); nothing was changed`,
  );
}

/** What an operator gives at registration. */
export interface DeviceRegistration {
  deviceId: string;
  attributes?: Record<string, string | number | boolean>;
  tags?: string[];
}

/** A device as the API shows it: never the secret hashes. */
export type PublicDevice = Omit<DeviceRecord, 'secretHash' | 'brokerHash'> & { hasSecret: boolean };

/** Strips the credential from a record. */
export function publicDevice(d: DeviceRecord): PublicDevice {
  const { secretHash, brokerHash: _brokerHash, ...rest } = d;
  return { ...rest, hasSecret: secretHash !== undefined };
}

/** The fields of a registration: any other is refused. */
const REGISTRATION_FIELDS = ['deviceId', 'attributes', 'tags'];

function checkRegistration(r: DeviceRegistration): void {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new UpdraftError('BAD_REQUEST', 'a device to register must be an object: {deviceId, attributes?, tags?}');
  if (r.deviceId === undefined) throw new UpdraftError('BAD_REQUEST', 'deviceId is required');
  if (typeof r.deviceId !== 'string') throw new UpdraftError('BAD_REQUEST', `deviceId must be a string of ${ID_RULE}`);
  const idDefect = idProblem('device id', r.deviceId);
  if (idDefect !== undefined) throw new UpdraftError('BAD_REQUEST', idDefect);
  // the broker's user name of operators and Updraft's instances: a device of that name could never connect
  if (r.deviceId === OPERATOR_USERNAME) throw new UpdraftError('BAD_REQUEST', `device id "${OPERATOR_USERNAME}" is reserved: it is the MQTT user name of operators and Updraft's instances`);
  // a misspelt field must not be dropped: {"tag": [...]} registered the device with no tags
  // (named with the device: a bulk registration lists up to 10,000)
  refuseUnknownFields(r, REGISTRATION_FIELDS, { where: `of device ${r.deviceId}` });
  if (r.attributes !== undefined) {
    if (typeof r.attributes !== 'object' || r.attributes === null || Array.isArray(r.attributes)) throw new UpdraftError('BAD_REQUEST', 'attributes must be an object');
    for (const [k, v] of Object.entries(r.attributes)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k)) throw new UpdraftError('BAD_REQUEST', `attribute name "${k}" must start with a letter or _ and hold only letters, digits and _`);
      if (RESERVED_NAMES.has(k)) throw new UpdraftError('BAD_REQUEST', `attribute name "${k}" is reserved`);
      if (!['string', 'number', 'boolean'].includes(typeof v)) throw new UpdraftError('BAD_REQUEST', `attribute ${k} must be a string, number or boolean`);
      // Infinity and NaN are stored as JSON, which writes them as null: what was set would read back as nothing
      if (typeof v === 'number' && !Number.isFinite(v)) throw new UpdraftError('BAD_REQUEST', `attribute ${k} must be a finite number`);
    }
  }
  if (r.tags !== undefined && (!Array.isArray(r.tags) || r.tags.some((t) => typeof t !== 'string' || !isValidId(t)))) {
    throw new UpdraftError('BAD_REQUEST', `tags must be an array of names (${ID_RULE})`);
  }
}

/**
 * What a device's withdrawn access means for the connections it holds: `all` (revoked)
 * closes every one, `secret` (a new secret) those the old secret opened; returns how many
 * were closed. The embedded broker does it (`EmbeddedBroker.cutOff`). An external broker
 * holds the connections itself and closes them when its password file is regenerated and
 * reloaded (docs/deployment.md): then `null`, "not done here".
 */
export type CutOff = (deviceId: string, which: 'all' | 'secret') => number | null;

/** Registers devices and manages their secrets. */
export class DeviceRegistry {
  private readonly store: StateStore;
  private readonly cutOff: CutOff;

  private readonly events: EventBus | undefined;
  private readonly idDefect: ((deviceId: string) => string | undefined) | undefined;
  /** The clock registrations are dated by (the cluster's, `cluster/cluster-clock.ts`, with several instances). */
  private readonly now: () => number;

  /**
   * `idDefect`: why the broker in use cannot take an otherwise valid id, and what to do,
   * refused at registration with that message (an external Mosquitto: an id holding ':',
   * `mosquittoUserNameDefect`), rather than registered for a device that could never log in.
   */
  constructor(deps: { store: StateStore; cutOff?: CutOff; events?: EventBus; idDefect?: (deviceId: string) => string | undefined; now?: () => number }) {
    this.store = deps.store;
    this.now = deps.now ?? Date.now;
    this.cutOff = deps.cutOff ?? (() => null);
    this.events = deps.events;
    this.idDefect = deps.idDefect;
  }

  private check(r: DeviceRegistration): void {
    checkRegistration(r);
    if (r.attributes !== undefined) checkAttributesSize(r.deviceId, r.attributes, 'give');
    const defect = this.idDefect?.(r.deviceId);
    if (defect !== undefined) throw new UpdraftError('BAD_REQUEST', defect);
  }

  /** Tells whoever keeps a copy of the broker credentials (an external broker's password file) that `deviceId`'s changed. */
  private credentialsChanged(deviceId: string, change: CredentialsChange): void {
    this.events?.emit('device.credentials', { deviceId, change });
  }

  /** Registers a device; resolves with its secret, which is not stored and never shown again. */
  async register(r: DeviceRegistration): Promise<{ device: PublicDevice; secret: string }> {
    this.check(r);
    const secret = newDeviceSecret();
    const now = this.now();
    const record: DeviceRecord = {
      deviceId: r.deviceId,
      attributes: r.attributes ?? {},
      tags: [...new Set(r.tags ?? [])],
      secretHash: hashDeviceSecret(secret),
      // for an external Mosquitto (updraft broker mosquitto-config): the same secret in its format
      brokerHash: await mosquittoPasswordHash(secret),
      revoked: false,
      createdAt: now,
      updatedAt: now,
      version: 1,
    };
    await this.store.createDevice(record);
    this.credentialsChanged(record.deviceId, 'registered');
    return { device: publicDevice(record), secret };
  }

  /**
   * Registers many devices at once (fleet provisioning, the simulator): all are validated
   * first, then written in the store's group commits. Resolves with each device's secret.
   *
   * All or nothing: a secret is shown once, in the answer, so a request that failed half
   * way would leave devices registered whose secrets nobody has. Ids already registered
   * are refused before anything is written (CONFLICT naming them); an id registered by
   * someone else while the request runs undoes the devices it had registered.
   */
  async registerMany(regs: DeviceRegistration[]): Promise<{ deviceId: string; secret: string }[]> {
    if (!Array.isArray(regs) || regs.length === 0) throw new UpdraftError('BAD_REQUEST', 'devices must list at least one device');
    if (regs.length > 10_000) throw new UpdraftError('BAD_REQUEST', 'at most 10000 devices per request; send several requests');
    regs.forEach((r) => this.check(r));
    if (new Set(regs.map((r) => r.deviceId)).size !== regs.length) throw new UpdraftError('BAD_REQUEST', 'a device id is listed twice');
    const taken = (await startInSlices(regs, 500, (r) => this.store.getDevice(r.deviceId))).filter((d) => d !== undefined).map((d) => d.deviceId);
    if (taken.length > 0) {
      const named = taken.slice(0, 5).join(', ') + (taken.length > 5 ? `, and ${taken.length - 5} more` : '');
      throw new UpdraftError('CONFLICT', `${taken.length} of these devices ${taken.length === 1 ? 'is' : 'are'} already registered (${named}); nothing was registered`);
    }
    const settled = await startInSlices(regs, 500, (r) =>
      this.register(r).then(
        ({ device, secret }) => ({ deviceId: r.deviceId, secret, version: device.version }),
        (err: unknown) => err as Error,
      ),
    );
    const failed = settled.find((s): s is Error => s instanceof Error);
    if (!failed) return settled.map((s) => ({ deviceId: (s as { deviceId: string }).deviceId, secret: (s as { secret: string }).secret }));
    const made = settled.filter((s): s is { deviceId: string; secret: string; version: number } => !(s instanceof Error));
    await startInSlices(made, 500, async (d) => {
      await this.store.deleteDevice(d.deviceId, d.version);
      this.credentialsChanged(d.deviceId, 'unregistered');
    });
    const e = asUpdraftError(failed);
    throw new UpdraftError(e.code, `${e.message}; nothing was registered`, { cause: failed });
  }

  /**
   * A registered device; NOT_FOUND naming it, with how to register it unless `hint` is false
   * (revoking, reinstating or deleting a device that does not exist calls for no registration).
   */
  async get(deviceId: string, hint = true): Promise<DeviceRecord> {
    const d = await this.store.getDevice(deviceId);
    if (!d) throw new UpdraftError('NOT_FOUND', `device ${deviceId} is not registered${hint ? `; register it with: updraft device register ${deviceId}` : ''}`);
    return d;
  }

  /** A registered device, or undefined. */
  find(deviceId: string): Promise<DeviceRecord | undefined> {
    return this.store.getDevice(deviceId);
  }

  /** A page of registered devices. */
  list(options: { after?: string; limit: number }): Promise<Page<DeviceRecord>> {
    return this.store.listDevices(options);
  }

  /**
   * Issues a new secret. The old one stops working at once: refused at CONNECT, and a
   * connection it opened is closed (one a client certificate opened stays), so whoever
   * holds a leaked secret is cut off, and the device reconnects with its new one. It does
   * not lift a revocation: that would also bring back the device's certificates; use
   * `reinstate`.
   */
  async rotateSecret(deviceId: string): Promise<{ secret: string; disconnected: number | null }> {
    const secret = newDeviceSecret();
    const brokerHash = await mosquittoPasswordHash(secret);
    await this.change(deviceId, (d) => ({ ...d, secretHash: hashDeviceSecret(secret), brokerHash }), false);
    this.credentialsChanged(deviceId, 'secret');
    return { secret, disconnected: this.cutOff(deviceId, 'secret') };
  }

  /**
   * Changes a device's attributes and tags (what queries, dynamic groups and continuous jobs
   * select devices by): `attributes` are merged, a null value removing its key; `tags`, when
   * given, replace the list. Continuous jobs pick up a device that now matches at their next look.
   */
  async update(deviceId: string, change: { attributes?: unknown; tags?: unknown }): Promise<PublicDevice> {
    if (typeof change !== 'object' || change === null || Array.isArray(change)) throw new UpdraftError('BAD_REQUEST', 'the change must be an object: {attributes?, tags?}');
    refuseUnknownFields(change, ['attributes', 'tags']);
    if (change.attributes === undefined && change.tags === undefined) throw new UpdraftError('BAD_REQUEST', 'give attributes and/or tags');
    const attrs = change.attributes;
    if (attrs !== undefined && (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs))) throw new UpdraftError('BAD_REQUEST', 'attributes must be an object');
    const removed = attrs ? Object.keys(attrs).filter((k) => (attrs as Record<string, unknown>)[k] === null) : [];
    const set = attrs ? Object.fromEntries(Object.entries(attrs).filter(([, v]) => v !== null)) : undefined;
    // the same rules as at registration, for what is set
    checkRegistration({ deviceId, ...(set ? { attributes: set as DeviceRegistration['attributes'] } : {}), ...(change.tags !== undefined ? { tags: change.tags as string[] } : {}) });
    const updated = await this.change(deviceId, (d) => {
      const attributes = { ...d.attributes, ...set };
      for (const k of removed) delete attributes[k];
      // the merged whole is bounded, not each change: refused before anything is written
      checkAttributesSize(deviceId, attributes, 'set', attributesSize(d.attributes));
      return { ...d, attributes, ...(change.tags !== undefined ? { tags: [...new Set(change.tags as string[])] } : {}) };
    });
    this.events?.emit('device.changed', { deviceId });
    return publicDevice(updated);
  }

  /**
   * Lifts a revocation: the device's current secret and certificates work again. A device that
   * is not revoked is left as it is (wasRevoked false), so the operator is not told otherwise.
   */
  async reinstate(deviceId: string): Promise<{ device: PublicDevice; wasRevoked: boolean }> {
    const current = await this.get(deviceId, false);
    if (!current.revoked) return { device: publicDevice(current), wasRevoked: false };
    const device = publicDevice(await this.change(deviceId, (d) => ({ ...d, revoked: false }), false));
    this.credentialsChanged(deviceId, 'reinstated');
    return { device, wasRevoked: true };
  }

  /**
   * Revokes a device: refused at CONNECT and at download from now on, and the connection it
   * holds is closed (after the revocation is committed: a connection admitted meanwhile is
   * refused or closed too).
   */
  async revoke(deviceId: string): Promise<{ device: PublicDevice; disconnected: number | null }> {
    const device = publicDevice(await this.change(deviceId, (d) => ({ ...d, revoked: true }), false));
    this.credentialsChanged(deviceId, 'revoked');
    return { device, disconnected: this.cutOff(deviceId, 'all') };
  }

  private async change(deviceId: string, edit: (d: DeviceRecord) => DeviceRecord, hint = true): Promise<DeviceRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.get(deviceId, hint);
      const next = { ...edit(current), updatedAt: this.now(), version: current.version + 1 };
      if (await this.store.updateDevice(next)) return next;
    }
    throw new UpdraftError('CONFLICT', `device ${deviceId} is being changed concurrently; retry`);
  }
}
