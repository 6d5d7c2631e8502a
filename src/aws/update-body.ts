/**
 * The body of an AWS Jobs request as the jobs door takes it (issue 9): the shared parser's
 * (`parseAwsJobsBody`), plus what only UpdateJobExecution allows. Its `stepTimeoutInMinutes`
 * takes 1 to 10080 "or -1", which "will cancel the current step timer (created by an earlier
 * use of UpdateJobExecutionRequest)"
 * (https://docs.aws.amazon.com/iot/latest/apireference/API_iot-jobs-data_UpdateJobExecution.html);
 * StartNextPendingJobExecution takes 1 to 10080 only, which is the parser's rule.
 */
import { AwsJobsError, parseAwsJobsBody, type AwsJobsRequestBody } from '../protocol/aws-jobs-messages.ts';
import type { AwsJobsRequest } from '../protocol/aws-topics.ts';
import { parseJsonObject } from '../protocol/json.ts';

/** A validated request body, and whether an update asked to cancel its step timer (`stepTimeoutInMinutes: -1`). */
export interface JobsRequestBody {
  body: AwsJobsRequestBody;
  cancelStepTimer: boolean;
}

/** Parses a Jobs request payload for `req`; throws AwsJobsError as `parseAwsJobsBody` does. */
export function parseJobsRequestBody(payload: Buffer, req: AwsJobsRequest): JobsRequestBody {
  try {
    return { body: parseAwsJobsBody(payload, req), cancelStepTimer: false };
  } catch (err) {
    // the parser checks the step timer's range once every other rule of the body holds (its
    // size, its fields): only a refusal of that field is looked at again
    if (req.op !== 'update' || !(err instanceof AwsJobsError) || err.code !== 'InvalidRequest' || !err.message.startsWith('stepTimeoutInMinutes')) throw err;
    const v = parseJsonObject(payload);
    if (typeof v === 'string') throw err;
    if (v.stepTimeoutInMinutes !== -1) throw new AwsJobsError('InvalidRequest', `${err.message}, or -1 to cancel the step timer an earlier update set`);
    // the rest of the body as sent (a spread keeps a "__proto__" key as data), checked again
    const { stepTimeoutInMinutes: _cancel, ...rest } = v;
    return { body: parseAwsJobsBody(Buffer.from(JSON.stringify(rest)), req), cancelStepTimer: true };
  }
}
