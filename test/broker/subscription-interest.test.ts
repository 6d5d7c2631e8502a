/** Topic matching and the count of subscriptions that lets the replica skip answers nobody receives. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SubscriptionInterest } from '../../src/broker/subscription-interest.ts';

it('matches topic filters as MQTT 3.1.1 §4.7 says', () => {
  const yes: [string, string][] = [
    ['state/#', 'state/d1/update/documents'],
    ['state/+/update/documents', 'state/d1/update/documents'],
    ['#', 'state/d1/update'],
    ['state/d1/#', 'state/d1'],
    ['state/d1/update/documents', 'state/d1/update/documents'],
    ['$aws/things/+/shadow/update/documents', '$aws/things/t1/shadow/update/documents'],
  ];
  const no: [string, string][] = [
    ['state/+/update/documents', 'state/d1/shadow/x/update/documents'],
    ['state/+', 'state/d1/update'],
    ['#', '$aws/things/t1/shadow/update/documents'],
    ['+/things/t1/shadow/update/documents', '$aws/things/t1/shadow/update/documents'],
    ['state/d2/update/documents', 'state/d1/update/documents'],
  ];
  for (const [f, t] of [...yes, ...no]) {
    const s = new SubscriptionInterest();
    s.add('c', f);
    assert.equal(s.has(t), yes.some(([yf, yt]) => yf === f && yt === t), `${f} against ${t}`);
  }
});

it('counts subscriptions per client: twice is once, unsubscribing or a clean disconnect removes them', () => {
  const s = new SubscriptionInterest();
  const docs = 'state/d1/update/documents';
  assert.equal(s.has(docs), false);
  s.add('agent-d1', 'state/d1/update/delta');
  assert.equal(s.has(docs), false, 'an agent does not listen to documents');
  s.add('dash', 'state/+/update/documents');
  s.add('dash', 'state/+/update/documents');
  s.add('tool', docs);
  assert.equal(s.has(docs), true);
  s.remove('dash', 'state/+/update/documents');
  assert.equal(s.has(docs), true, 'the tool still listens');
  assert.equal(s.has('state/d2/update/documents'), false, 'the wildcard was counted once and is gone');
  s.forget('tool');
  assert.equal(s.has(docs), false);
  s.remove('tool', docs); // unknown: nothing happens
  assert.equal(s.has(docs), false);
});

it('keeps a wildcard filter while any client holds it, with exact filters alongside', () => {
  const s = new SubscriptionInterest();
  const docs = 'state/d1/update/documents';
  s.add('agent-d1', 'state/d1/update/delta');
  s.add('dash-1', 'state/+/update/documents');
  s.add('dash-2', 'state/+/update/documents');
  s.add('dash-2', '#');
  s.forget('dash-1');
  assert.equal(s.has(docs), true, 'dash-2 still holds both wildcards');
  s.remove('dash-2', 'state/+/update/documents');
  assert.equal(s.has(docs), true, '# still matches');
  s.remove('dash-2', '#');
  assert.equal(s.has(docs), false, 'no wildcard left');
  assert.equal(s.has('state/d1/update/delta'), true, 'the exact filter stays');
  s.add('dash-3', 'state/d1/#');
  assert.equal(s.has(docs), true, 'a wildcard added after the tries emptied');
});

it("finds a device's own wildcard filters (kept by their first two levels) with the other filters alongside", () => {
  const s = new SubscriptionInterest();
  s.add('d1', 'state/d1/+/accepted');
  s.add('d1', 'state/d1/+/rejected');
  s.add('d2', 'state/d2/+/accepted');
  s.add('d3', 'state/d3/#');
  s.add('d4', 'state/d4//+');
  assert.equal(s.has('state/d1/update/accepted'), true);
  assert.equal(s.has('state/d1/get/rejected'), true);
  assert.equal(s.has('state/d1/update/documents'), false, 'a device does not listen to documents');
  assert.equal(s.has('state/d1/update/accepted/x'), false, '+ is one level');
  assert.equal(s.has('state/d2/update/rejected'), false, "d1's rejected is not d2's");
  assert.equal(s.has('state/d3'), true, '# matches the level above it');
  assert.equal(s.has('state/d3/a/b/c'), true);
  assert.equal(s.has('state/d4//x'), true, 'an empty level is a level');
  assert.equal(s.has('state'), false);
  s.forget('d1');
  assert.equal(s.has('state/d1/update/accepted'), false, 'gone with its client');
  assert.equal(s.has('state/d2/update/accepted'), true, "another device's stays");
  // a filter under the same two levels from another client, and a trie filter beside them
  s.add('tool', 'state/d2/update/+');
  s.add('dash', 'state/+/update/documents');
  s.remove('d2', 'state/d2/+/accepted');
  assert.equal(s.has('state/d2/update/accepted'), true, "the tool's filter under the same levels");
  assert.equal(s.has('state/d9/update/documents'), true, "the dashboard's, in the trie");
  s.remove('tool', 'state/d2/update/+');
  assert.equal(s.has('state/d2/update/accepted'), false);
  // $ topics: a filter whose first level is $aws is kept by its levels and matches them
  s.add('aws', '$aws/things/t1/shadow/#');
  assert.equal(s.has('$aws/things/t1/shadow/update/accepted'), true);
  assert.equal(s.has('$aws/things/t2/shadow/update/accepted'), false);
});
