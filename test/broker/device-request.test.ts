/** The JSON body of a device's request beside the replica (credentials, certificate renewal, job logs): what is refused. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requestBody } from '../../src/broker/device-request.ts';

const refused = (payload: Buffer, message: RegExp, code = 'BAD_REQUEST') => assert.throws(() => requestBody(payload, 4096, 'job log'), (e: any) => e.code === code && message.test(e.message));

describe('device request body', () => {
  it('refuses what is not a JSON object of UTF-8 text within the size', () => {
    refused(Buffer.from('{nope'), /^Invalid JSON$/);
    refused(Buffer.from('[1]'), /must be a JSON object/);
    refused(Buffer.alloc(5000, 0x20), /larger than 4096 bytes/, 'TOO_LARGE');
    // a job log's lines are stored as sent: bytes that are not UTF-8 were stored as U+FFFD
    refused(Buffer.concat([Buffer.from('{"jobId":"j","lines":["'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"]}')]), /^Invalid JSON: the payload is not UTF-8/);
    assert.deepEqual(requestBody(Buffer.from('{"lines":["ünïcode ✓"]}'), 4096, 'job log'), { lines: ['ünïcode ✓'] });
    assert.deepEqual(requestBody(Buffer.alloc(0), 4096, 'credentials request', true), {});
  });
});
