/** Registers a simulated fleet through the bulk API, 10,000 devices per request. */
import type { ApiClient } from '../cli/api-client.ts';
import { UpdraftError } from '../errors.ts';
import type { SimDevice } from './fleet-simulator.ts';

/**
 * Registers `count` devices named `<prefix><n>` and resolves with their secrets. Each request
 * is all or nothing, but a fleet above 10,000 takes several: `onRegistered` hears the devices
 * registered so far after each, so that a failure later does not lose the secrets (shown
 * once) of those already registered. A failure names how many were.
 */
export async function registerFleet(api: ApiClient, prefix: string, count: number, onRegistered?: (devices: SimDevice[]) => Promise<void>): Promise<SimDevice[]> {
  const out: SimDevice[] = [];
  const width = String(count).length;
  for (let i = 0; i < count; i += 10_000) {
    const devices = Array.from({ length: Math.min(10_000, count - i) }, (_, k) => ({ deviceId: `${prefix}${String(i + k + 1).padStart(width, '0')}`, tags: ['sim'] }));
    let r: { devices: SimDevice[] };
    try {
      r = await api.call<{ devices: SimDevice[] }>('POST', '/api/v1/devices/bulk', { devices });
    } catch (err) {
      if (out.length > 0 && err instanceof UpdraftError) {
        throw new UpdraftError(err.code, `${err.message}; the requests before this one registered ${out.length} device(s), ${out[0]!.deviceId} to ${out[out.length - 1]!.deviceId}`, { cause: err, status: err.status });
      }
      throw err;
    }
    out.push(...r.devices);
    await onRegistered?.(out);
  }
  return out;
}
