/** The embedded broker's per-device topic rules (docs/design.md §6), on their own. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Sender } from '../../src/broker/message-bus.ts';
import { mayPublish, maySubscribe } from '../../src/broker/topic-acl.ts';

const dev: Sender = { kind: 'device', id: 'dev-1' };

describe('topic ACL', () => {
  it('lets a device publish its own requests and presence, and nothing of another device or any answer', () => {
    for (const topic of ['state/dev-1/update', 'state/dev-1/get', 'state/dev-1/delete', 'state/dev-1/shadow/cfg/update', 'state/dev-1/credentials/request', 'state/dev-1/presence']) {
      assert.equal(mayPublish(dev, topic), true, topic);
    }
    for (const topic of ['state/dev-2/update', 'state/dev-2/presence', 'state/dev-1/update/accepted', 'state/dev-1/update/delta', 'state/dev-1/presence/x', 'state/dev-1', 'updraft/events/i-1', '$SYS/broker/uptime']) {
      assert.equal(mayPublish(dev, topic), false, topic);
    }
  });

  it('lets a device subscribe under its own prefix only', () => {
    assert.equal(maySubscribe(dev, 'state/dev-1/#'), true);
    assert.equal(maySubscribe(dev, 'state/+/presence'), false);
    assert.equal(maySubscribe(dev, 'state/dev-2/presence'), false);
  });
});
