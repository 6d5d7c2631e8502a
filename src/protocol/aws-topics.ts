/**
 * The AWS IoT reserved topic families Updraft also answers (issue 9), parsed and built here
 * and nowhere else (STYLE.md habit 1). A thing name is an Updraft device id.
 *
 * Device Shadow (https://docs.aws.amazon.com/iot/latest/developerguide/reserved-topics.html#reserved-topics-shadow):
 *   $aws/things/{thing}/shadow/{update|get|delete}[/accepted|/rejected|/delta|/documents]
 *   $aws/things/{thing}/shadow/name/{shadowName}/{update|get|delete}[/...]
 * Jobs (https://docs.aws.amazon.com/iot/latest/developerguide/reserved-topics.html#reserved-topics-job):
 *   $aws/things/{thing}/jobs/{get|start-next}[/accepted|/rejected]
 *   $aws/things/{thing}/jobs/{jobId|$next}/{get|update}[/accepted|/rejected]
 *   $aws/things/{thing}/jobs/{notify|notify-next}
 */
import { isClassic, isValidId, namedRequest, parseRequestTopic, type AnswerKind, type ParsedRequestTopic, type ShadowOperation, type TopicRef } from './topics.ts';

/** Every AWS reserved topic of a thing starts with this. */
export const AWS_THINGS_PREFIX = '$aws/things/';

const OPS: ReadonlySet<string> = new Set(['update', 'get', 'delete']);
const ANSWERS: ReadonlySet<string> = new Set(['accepted', 'rejected', 'delta', 'documents']);

/** The topic prefix of one shadow in the AWS family. */
export function awsShadowPrefix(ref: TopicRef): string {
  return isClassic(ref) ? `${AWS_THINGS_PREFIX}${ref.deviceId}/shadow` : `${AWS_THINGS_PREFIX}${ref.deviceId}/shadow/name/${ref.name}`;
}

/** An AWS shadow request topic, e.g. `$aws/things/dev-1/shadow/update`. */
export function awsShadowRequestTopic(ref: TopicRef, op: ShadowOperation): string {
  return `${awsShadowPrefix(ref)}/${op}`;
}

/** An AWS shadow answer topic, e.g. `$aws/things/dev-1/shadow/name/cfg/get/accepted`. */
export function awsShadowAnswerTopic(ref: TopicRef, op: ShadowOperation, kind: AnswerKind): string {
  return `${awsShadowPrefix(ref)}/${op}/${kind}`;
}

/**
 * Parses an AWS shadow request topic; undefined for anything else (answers included). A
 * named shadow's whose name breaks the rule carries `nameProblem`, as `parseRequestTopic`.
 */
export function parseAwsShadowRequest(topic: string): ParsedRequestTopic | undefined {
  if (!topic.startsWith(AWS_THINGS_PREFIX)) return undefined;
  const parts = topic.split('/');
  if (parts[3] !== 'shadow') return undefined;
  const thing = parts[2]!;
  if (!isValidId(thing)) return undefined;
  if (parts.length === 5 && OPS.has(parts[4]!)) return { deviceId: thing, name: '', op: parts[4] as ShadowOperation };
  if (parts.length === 7 && parts[4] === 'name' && OPS.has(parts[6]!)) return namedRequest(thing, parts[5]!, parts[6] as ShadowOperation);
  return undefined;
}

/**
 * The AWS topic an answer of the replica (`state/{id}/.../{op}/{kind}`) is mirrored to, or
 * undefined when `topic` is not a shadow answer.
 */
export function awsMirrorOfAnswer(topic: string): string | undefined {
  const slash = topic.lastIndexOf('/');
  const kind = topic.slice(slash + 1);
  if (!ANSWERS.has(kind)) return undefined;
  const req = parseRequestTopic(topic.slice(0, slash));
  return req ? awsShadowAnswerTopic(req, req.op, kind as AnswerKind) : undefined;
}

/** The thing a `$aws/things/{thing}/...` topic or filter names literally, or undefined. */
export function awsThingOf(topic: string): string | undefined {
  if (!topic.startsWith(AWS_THINGS_PREFIX)) return undefined;
  const end = topic.indexOf('/', AWS_THINGS_PREFIX.length);
  const thing = end === -1 ? topic.slice(AWS_THINGS_PREFIX.length) : topic.slice(AWS_THINGS_PREFIX.length, end);
  return isValidId(thing) ? thing : undefined;
}

/** A Jobs request, as its topic names it. */
export type AwsJobsRequest =
  | { thing: string; op: 'get' }
  | { thing: string; op: 'start-next' }
  | { thing: string; op: 'describe'; jobId: string }
  | { thing: string; op: 'update'; jobId: string };

/**
 * The job ids a Jobs topic may name: AWS's, `[a-zA-Z0-9_-]` 1 to 64 characters
 * (DescribeJobExecution's jobId), and Updraft's rollback of one, `<jobId>.rollback`, the only
 * other id the door shows (job-view.ts). Anything else (`..`, `a:b`, 65 characters, an
 * attempt's or a stay's device-side id) names no job execution AWS could have: the topic maps
 * to no operation, InvalidTopic, as for the other request-shaped topics that name none.
 */
const JOB_ID = /^[A-Za-z0-9_-]{1,64}(?:\.rollback)?$/;

/**
 * Parses a Jobs request topic. Returns undefined for anything that is not a request of the
 * family (answers, notify), `{ invalid }` for a request-shaped topic that names no valid
 * operation: AWS answers those with `InvalidTopic` on the `.../rejected` topic.
 */
export function parseAwsJobsRequest(topic: string): AwsJobsRequest | { invalid: true; thing: string; rejectTopic: string } | undefined {
  if (!topic.startsWith(AWS_THINGS_PREFIX)) return undefined;
  const parts = topic.split('/');
  if (parts[3] !== 'jobs' || parts.length < 5) return undefined;
  const thing = parts[2]!;
  if (!isValidId(thing)) return undefined;
  const last = parts[parts.length - 1]!;
  if (last === 'accepted' || last === 'rejected' || (parts.length === 5 && (last === 'notify' || last === 'notify-next'))) return undefined;
  if (parts.length === 5 && last === 'get') return { thing, op: 'get' };
  if (parts.length === 5 && last === 'start-next') return { thing, op: 'start-next' };
  if (parts.length === 6 && (last === 'get' || last === 'update')) {
    const jobId = parts[4]!;
    if (JOB_ID.test(jobId) || (jobId === '$next' && last === 'get')) return last === 'get' ? { thing, op: 'describe', jobId } : { thing, op: 'update', jobId };
  }
  return { invalid: true, thing, rejectTopic: `${topic}/rejected` };
}

/** The answer topic of a Jobs request. */
export function awsJobsAnswerTopic(req: AwsJobsRequest, kind: 'accepted' | 'rejected'): string {
  const base = `${AWS_THINGS_PREFIX}${req.thing}/jobs`;
  if (!('jobId' in req)) return `${base}/${req.op}/${kind}`;
  return `${base}/${req.jobId}/${req.op === 'describe' ? 'get' : 'update'}/${kind}`;
}

/** `$aws/things/{thing}/jobs/notify` (pending list changed) or `.../notify-next` (next execution changed). */
export function awsJobsNotifyTopic(thing: string, which: 'notify' | 'notify-next'): string {
  return `${AWS_THINGS_PREFIX}${thing}/jobs/${which}`;
}

/** The shadow and jobs request topic filters an instance consumes from an external broker. */
export const AWS_REQUEST_FILTERS: readonly string[] = [
  ...['update', 'get', 'delete'].flatMap((op) => [`$aws/things/+/shadow/${op}`, `$aws/things/+/shadow/name/+/${op}`]),
  '$aws/things/+/jobs/get',
  '$aws/things/+/jobs/start-next',
  '$aws/things/+/jobs/+/get',
  '$aws/things/+/jobs/+/update',
];
