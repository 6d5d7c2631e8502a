/** Registers a simulated fleet through the bulk API, 10,000 devices per request. */
import type { ApiClient } from '../cli/api-client.ts';
import type { SimDevice } from './fleet-simulator.ts';

/** Registers `count` devices named `<prefix><n>` and resolves with their secrets. */
export async function registerFleet(api: ApiClient, prefix: string, count: number): Promise<SimDevice[]> {
  const out: SimDevice[] = [];
  const width = String(count).length;
  for (let i = 0; i < count; i += 10_000) {
    const devices = Array.from({ length: Math.min(10_000, count - i) }, (_, k) => ({ deviceId: `${prefix}${String(i + k + 1).padStart(width, '0')}`, tags: ['sim'] }));
    const r = await api.call<{ devices: SimDevice[] }>('POST', '/api/v1/devices/bulk', { devices });
    out.push(...r.devices);
  }
  return out;
}
