/**
 * isUnreachable (src/errors.ts): which failures are an outage, answered 503 "try again in 5 s"
 * and retried by agents for minutes, and which are permanent faults that waiting does not fix.
 * The errors are the libraries' own: the AWS SDK's S3ServiceException and node-postgres's
 * DatabaseError, built as they build them from an answer.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { S3ServiceException } from '@aws-sdk/client-s3';
import pg from 'pg';
import { UpdraftError, asUpdraftError, isUnreachable } from '../../src/errors.ts';

/** What the AWS SDK throws for an S3 answer with `status` and error `name`. */
const s3Error = (status: number, name: string) => new S3ServiceException({ name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status }, message: `${name} (${status})` });

/** What node-postgres throws for an ErrorResponse with SQLSTATE `code`. */
const pgError = (code: string) => Object.assign(new pg.DatabaseError(`sqlstate ${code}`, 0, 'error'), { code });

describe('isUnreachable', () => {
  it('takes S3 500, 502, 503 and 504 for an outage', () => {
    for (const [status, name] of [[500, 'InternalError'], [502, 'BadGateway'], [503, 'ServiceUnavailable'], [504, 'GatewayTimeout'], [503, 'Unknown']] as const) {
      assert.equal(isUnreachable(s3Error(status, name)), true, `${status} ${name}`);
    }
  });

  it('does not take a permanent S3 5xx (501 NotImplemented, 505, 507) nor a refusal for one', () => {
    for (const [status, name] of [[501, 'NotImplemented'], [505, 'HttpVersionNotSupported'], [507, 'InsufficientStorage'], [403, 'AccessDenied'], [400, 'InvalidArgument']] as const) {
      assert.equal(isUnreachable(s3Error(status, name)), false, `${status} ${name}`);
    }
    // and it stays a 500 when a part wrapped it
    assert.equal(asUpdraftError(new UpdraftError('INTERNAL', 'cannot read', { cause: s3Error(501, 'NotImplemented') })).code, 'INTERNAL');
  });

  it("takes PostgreSQL's connection failures of class 08, restarts and too many connections for an outage", () => {
    for (const code of ['08000', '08003', '08006', '08001', '08004', '57P01', '57P02', '57P03', '53300']) {
      assert.equal(isUnreachable(pgError(code)), true, code);
      assert.equal(asUpdraftError(new UpdraftError('INTERNAL', 'PostgreSQL: query failed', { cause: pgError(code) })).code, 'UNAVAILABLE', code);
    }
  });

  it('does not take 08P01 protocol_violation, 08007 transaction_resolution_unknown or other classes for one', () => {
    for (const code of ['08P01', '08007', '23505', '42P01', '53100']) {
      assert.equal(isUnreachable(pgError(code)), false, code);
      assert.equal(asUpdraftError(pgError(code)).code, 'INTERNAL', code);
    }
  });
});
