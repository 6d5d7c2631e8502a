/**
 * The registry as an external broker needs it (`GET /api/v1/broker/credentials`): each
 * device's id, whether it is revoked, and its secret's kept `$7$` hash.
 */
import type { RegisteredDevice } from '../broker/mosquitto-config.ts';
import type { ApiClient } from './api-client.ts';

/** Device ids per `?ids=` request (http/broker-routes.ts). */
const IDS_PER_REQUEST = 100;

/** Every registered device with what the broker needs (revoked, the kept hash), page by page. */
export async function brokerCredentials(api: ApiClient): Promise<RegisteredDevice[]> {
  const devices: RegisteredDevice[] = [];
  let after: string | undefined;
  do {
    const q = new URLSearchParams({ limit: '1000', ...(after ? { after } : {}) });
    const page = await api.call<{ items: RegisteredDevice[]; next?: string }>('GET', `/api/v1/broker/credentials?${q}`);
    devices.push(...page.items.map(pick));
    after = page.next;
  } while (after);
  return devices;
}

/** The credentials of `ids`, 100 per request; ids not registered are left out. */
export async function credentialsOf(api: ApiClient, ids: string[]): Promise<RegisteredDevice[]> {
  const out: RegisteredDevice[] = [];
  for (let i = 0; i < ids.length; i += IDS_PER_REQUEST) {
    const chunk = ids.slice(i, i + IDS_PER_REQUEST);
    const { items } = await api.call<{ items: RegisteredDevice[] }>('GET', `/api/v1/broker/credentials?ids=${chunk.map(encodeURIComponent).join(',')}`);
    out.push(...items.map(pick));
  }
  return out;
}

function pick(d: RegisteredDevice): RegisteredDevice {
  return { deviceId: d.deviceId, revoked: d.revoked, ...(d.brokerHash ? { brokerHash: d.brokerHash } : {}) };
}
