/**
 * Every topic string of the replica's MQTT protocol (docs/design.md §2). Nothing else in the code
 * base concatenates topic strings: build them here, parse them here.
 *
 * Classic shadow:  state/{deviceId}/{update|get|delete}[/accepted|/rejected|/delta|/documents]
 * Named shadow:    state/{deviceId}/shadow/{name}/{update|get|delete}[/...]
 * Presence:        state/{deviceId}/presence (retained, `presence.ts`)
 * Other requests:  state/{deviceId}/credentials/request, .../certificate/renew, .../job-log
 */

/**
 * The characters of device ids, shadow names, group and artifact names: what may appear as
 * one topic level and one URL path segment. `.` and `..` match it but are no ids
 * (`isValidId`): use `isValidId`, not this pattern, to check a whole id.
 */
export const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;

/** The id rule, as every message stating it words it. */
export const ID_RULE = '1 to 128 characters of letters, digits, _ . : -, other than "." and ".."';

/**
 * Why `.` and `..` are no ids. A URL path cannot hold them: WHATWG URL parsing (fetch, curl,
 * browsers, the server's `new URL(req.url)`) resolves them as dot segments, `%2E` forms
 * included (URL Standard, "single-dot / double-dot URL path segment"), so
 * `/api/v1/devices/../revoke` reaches `/api/v1/revoke`.
 */
export const DOT_SEGMENT_PROBLEM = '"." and ".." cannot be ids: a URL path cannot hold them';

/** True when `id` is usable as a device id, shadow name, group or artifact name (no MQTT wildcards, no '/', no dot segment). */
export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id) && id !== '.' && id !== '..';
}

/**
 * Why `id` cannot be `what` ("device id", "group name", ...), or undefined when it can:
 * `group name ".." is refused: "." and ".." cannot be ids: ...`, or
 * `group name "a b" must be 1 to 128 characters of ...`.
 */
export function idProblem(what: string, id: string): string | undefined {
  if (isValidId(id)) return undefined;
  if (id === '.' || id === '..') return `${what} "${id}" is refused: ${DOT_SEGMENT_PROBLEM}`;
  return `${what} "${id.slice(0, 140)}" must be ${ID_RULE}`;
}

/**
 * What a topic a client publishes cannot hold in a level: the wildcards ([MQTT-3.3.2-2]) and
 * U+0000 ([MQTT-1.5.3-2]). A shadow name level holding one is no request: it is not answered.
 */
const UNPUBLISHABLE = /[+#\u0000]/;

/**
 * Why `name` cannot name a shadow, or undefined when it can. The rule (docs/protocol.md):
 * `ID_RULE`, as device ids: a name is one topic level and one URL path segment.
 */
export function shadowNameProblem(name: string): string | undefined {
  if (isValidId(name)) return undefined;
  const bad = [...name].find((c) => !ID_PATTERN.test(c));
  const what =
    name.length === 0 ? 'it is empty'
    : bad !== undefined ? `it holds ${JSON.stringify(bad)}`
    : name === '.' || name === '..' ? `it is "${name}", which a URL path cannot hold`
    : `it has ${name.length} characters`;
  return `Invalid shadow name: ${what}; a shadow name is ${ID_RULE}`;
}

export type ShadowOperation = 'update' | 'get' | 'delete';
export type AnswerKind = 'accepted' | 'rejected' | 'delta' | 'documents';

/** Identifies one shadow of one device; `name` is '' for the classic (unnamed) shadow. */
export interface ShadowRef {
  deviceId: string;
  name: string;
}

/**
 * A shadow as a topic names it. `nameProblem` is set when the name level breaks the rule
 * (`shadowNameProblem`): the request is answered with a 400 on its own topics, so its name,
 * even an empty one, is a named shadow's, never the classic shadow's.
 */
export type TopicRef = ShadowRef & { nameProblem?: string };

/** True when `ref` is the classic shadow (`name` '' and no invalid name). */
export function isClassic(ref: TopicRef): boolean {
  return ref.name === '' && ref.nameProblem === undefined;
}

/** The topic prefix of one shadow: `state/dev-1` or `state/dev-1/shadow/config`. */
export function shadowPrefix(ref: TopicRef): string {
  return isClassic(ref) ? `state/${ref.deviceId}` : `state/${ref.deviceId}/shadow/${ref.name}`;
}

/** The request topic a device or operator publishes to, e.g. `state/dev-1/update`. */
export function requestTopic(ref: TopicRef, op: ShadowOperation): string {
  return `${shadowPrefix(ref)}/${op}`;
}

/** An answer topic, e.g. `state/dev-1/update/delta` or `state/dev-1/get/accepted`. */
export function answerTopic(ref: TopicRef, op: ShadowOperation, kind: AnswerKind): string {
  return `${shadowPrefix(ref)}/${op}/${kind}`;
}

/** The delta topic the agent subscribes to (pattern step 1). */
export function deltaTopic(deviceId: string): string {
  return answerTopic({ deviceId, name: '' }, 'update', 'delta');
}

/** A request parsed from its topic. */
export interface ParsedRequestTopic extends ShadowRef {
  op: ShadowOperation;
  /** Set when the shadow name breaks the rule: the request is refused with this (400). */
  nameProblem?: string;
}

const OPS: ReadonlySet<string> = new Set(['update', 'get', 'delete']);

/**
 * Parses a request topic; returns undefined for anything that is not a shadow request
 * (answers, other topic families, malformed device ids), so callers can ignore it cheaply.
 * A named shadow's request whose name breaks the rule is one, with `nameProblem`: its device
 * may publish it (the device id level is what the topic ACL checks) and it is answered with a
 * 400 on its own `.../rejected` topic, under that device's prefix, instead of being dropped.
 */
export function parseRequestTopic(topic: string): ParsedRequestTopic | undefined {
  if (!topic.startsWith('state/')) return undefined;
  // the operation ends the topic: answers (`.../accepted`, `.../delta`), which pass here as
  // often as requests, are refused before the topic is split
  if (!OPS.has(topic.slice(topic.lastIndexOf('/') + 1))) return undefined;
  const parts = topic.split('/');
  if (parts.length === 3) {
    const [, deviceId, op] = parts as [string, string, string];
    if (!OPS.has(op) || !isValidId(deviceId)) return undefined;
    return { deviceId, name: '', op: op as ShadowOperation };
  }
  if (parts.length === 5 && parts[2] === 'shadow') {
    const [, deviceId, , name, op] = parts as [string, string, string, string, string];
    if (!OPS.has(op) || !isValidId(deviceId)) return undefined;
    return namedRequest(deviceId, name, op as ShadowOperation);
  }
  return undefined;
}

/**
 * A named shadow's request of `deviceId` (valid) on the name level `name`: with `nameProblem`
 * when the name breaks the rule, undefined when no client could have published it.
 */
export function namedRequest(deviceId: string, name: string, op: ShadowOperation): ParsedRequestTopic | undefined {
  if (isValidId(name)) return { deviceId, name, op };
  if (UNPUBLISHABLE.test(name)) return undefined;
  return { deviceId, name, op, nameProblem: shadowNameProblem(name)! };
}

/** The device id a topic belongs to (`state/{id}/...`), or undefined for other families. */
export function topicDeviceId(topic: string): string | undefined {
  if (!topic.startsWith('state/')) return undefined;
  const end = topic.indexOf('/', 6);
  return end === -1 ? topic.slice(6) : topic.slice(6, end);
}

/**
 * Temporary download credentials (issue 5): a device asks on `state/{id}/credentials/request`
 * and the answer arrives on `.../request/accepted` or `.../request/rejected`, echoing its
 * clientToken, like a shadow request.
 */
export function credentialsRequestTopic(deviceId: string): string {
  return `state/${deviceId}/credentials/request`;
}

/** The answer topics of a credentials request. */
export function credentialsAnswerTopic(deviceId: string, kind: 'accepted' | 'rejected'): string {
  return `${credentialsRequestTopic(deviceId)}/${kind}`;
}

/** The device id of a credentials request topic, or undefined for any other topic. */
export function parseCredentialsRequestTopic(topic: string): { deviceId: string } | undefined {
  return parseServiceTopic(topic, 'credentials', 'request');
}

/** The device id of `state/{id}/{family}/{action}` (a request to a service beside the replica), or undefined. */
function parseServiceTopic(topic: string, family: string, action: string): { deviceId: string } | undefined {
  if (!topic.endsWith(`/${family}/${action}`)) return undefined;
  const parts = topic.split('/');
  if (parts.length !== 4 || parts[0] !== 'state' || parts[2] !== family || parts[3] !== action) return undefined;
  return isValidId(parts[1]!) ? { deviceId: parts[1]! } : undefined;
}

/**
 * Renewal of a device's client certificate (docs/security.md): a device asks on
 * `state/{id}/certificate/renew` with a certificate signing request for a key it made, and
 * the certificate arrives on `.../renew/accepted` (or a refusal on `.../renew/rejected`),
 * echoing its clientToken.
 */
export function certificateRenewTopic(deviceId: string): string {
  return `state/${deviceId}/certificate/renew`;
}

/** The answer topics of a certificate renewal. */
export function certificateAnswerTopic(deviceId: string, kind: 'accepted' | 'rejected'): string {
  return `${certificateRenewTopic(deviceId)}/${kind}`;
}

/** The device id of a certificate renewal topic, or undefined for any other topic. */
export function parseCertificateRenewTopic(topic: string): { deviceId: string } | undefined {
  return parseServiceTopic(topic, 'certificate', 'renew');
}

/**
 * A device's log of a failed job (`protocol/job-log.ts`): sent on `state/{id}/job-log`, answered
 * on `.../job-log/accepted` or `.../rejected`, which the agent's `state/{id}/+/accepted|rejected`
 * subscriptions already cover.
 */
export function jobLogTopic(deviceId: string): string {
  return `state/${deviceId}/job-log`;
}

/** The answer topics of a job log. */
export function jobLogAnswerTopic(deviceId: string, kind: 'accepted' | 'rejected'): string {
  return `${jobLogTopic(deviceId)}/${kind}`;
}

/** The device id of a job log topic, or undefined for any other topic. */
export function parseJobLogTopic(topic: string): { deviceId: string } | undefined {
  if (!topic.endsWith('/job-log') || !topic.startsWith('state/')) return undefined;
  const deviceId = topic.slice(6, -8);
  return isValidId(deviceId) ? { deviceId } : undefined;
}

/**
 * The device id of any request a device may publish to Updraft (shadow, credentials,
 * certificate renewal, job log), or undefined for any other topic: what the topic ACL lets a
 * device publish on its own topics, and what the brokers hand to the server.
 */
export function parseDeviceRequestTopic(topic: string): { deviceId: string } | undefined {
  return parseRequestTopic(topic) ?? parseCredentialsRequestTopic(topic) ?? parseCertificateRenewTopic(topic) ?? parseJobLogTopic(topic);
}

/** The topic a device's presence is published on, retained: `state/dev-1/presence`. */
export function presenceTopic(deviceId: string): string {
  return `state/${deviceId}/presence`;
}

/** What an Updraft instance subscribes to, on an external broker, to learn every device's presence. */
export const PRESENCE_FILTER = 'state/+/presence';

/**
 * Where an instance marks the end of the retained presence the broker replays when it
 * subscribes (`external-broker.ts`): its own message, published after the SUBACK, comes
 * after them. Only the service user may use `updraft/#`.
 */
export function presenceSyncTopic(clientId: string): string {
  return `updraft/presence-sync/${clientId}`;
}

/** The device id of a presence topic, or undefined for any other topic. */
export function parsePresenceTopic(topic: string): string | undefined {
  if (!topic.endsWith('/presence') || !topic.startsWith('state/')) return undefined;
  const deviceId = topic.slice(6, -9);
  return isValidId(deviceId) ? deviceId : undefined;
}

/**
 * Instance-to-instance events (several Updraft instances on one external broker): each
 * instance publishes batches of its job and device events on `updraft/events/{instanceId}`
 * and subscribes to `updraft/events/+`, so a live view served by any instance sees them
 * all. Only the service user may use `updraft/#` (devices' ACL stops at `state/{id}/`).
 */
export const EVENT_RELAY_FILTER = 'updraft/events/+';

/** The topic an instance publishes its event batches on. */
export function eventRelayTopic(instanceId: string): string {
  return `updraft/events/${instanceId}`;
}

/** The instance id of an event relay topic, or undefined for any other topic. */
export function parseEventRelayTopic(topic: string): string | undefined {
  const parts = topic.split('/');
  return parts.length === 3 && parts[0] === 'updraft' && parts[1] === 'events' && isValidId(parts[2]!) ? parts[2] : undefined;
}
