/**
 * `GET /api/v1/broker/credentials`: what an external broker needs to admit devices (issue 6),
 * page by page: each device's id, whether it is revoked and the `$7$` hash of its secret in
 * Mosquitto's format (`updraft broker mosquitto-config` turns the pages into a password
 * file). Behind the operator token like every `/api/` route; the hashes are of 256-bit
 * random secrets, so they cannot be turned back into them, but they are still kept out of
 * every other view of a device.
 */
import { UpdraftError } from '../errors.ts';
import type { DeviceRegistry } from '../registry/device-registry.ts';
import { sendJson } from './respond.ts';
import type { Router } from './router.ts';

/** Adds the broker credentials route. */
export function addBrokerRoutes(router: Router, deps: { registry: DeviceRegistry }): void {
  router.add('GET', '/api/v1/broker/credentials', async ({ res, url }) => {
    const raw = url.searchParams.get('limit') ?? '1000';
    const limit = Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 5000) throw new UpdraftError('BAD_REQUEST', `limit must be an integer from 1 to 5000, got ${raw}`);
    const after = url.searchParams.get('after') ?? undefined;
    const page = await deps.registry.list({ limit, ...(after ? { after } : {}) });
    sendJson(res, 200, {
      items: page.items.map((d) => ({ deviceId: d.deviceId, revoked: d.revoked, ...(d.brokerHash ? { brokerHash: d.brokerHash } : {}) })),
      ...(page.next ? { next: page.next } : {}),
    });
  });
}
