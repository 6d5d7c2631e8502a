/** Registers a simulated fleet through the bulk API, 10,000 devices per request. */
import type { ApiClient } from '../cli/api-client.ts';
import { UpdraftError } from '../errors.ts';
import type { SimDevice } from './fleet-simulator.ts';

/**
 * A registered device named `<prefix><digits>`, or undefined: one page of one device of the
 * registry's listing, which is ordered by id (bytes: the stores' id columns are "C" collated),
 * from the cursor `<prefix>/`. `/` sorts just before `0` and is no character of an id, so the
 * first id after it that starts with the prefix and a digit is there if any such id is.
 */
async function firstNumbered(api: ApiClient, prefix: string): Promise<string | undefined> {
  const q = new URLSearchParams({ limit: '1', after: `${prefix}/` });
  const { items } = await api.call<{ items: { deviceId: string }[] }>('GET', `/api/v1/devices?${q}`);
  const id = items[0]?.deviceId;
  return id !== undefined && id.startsWith(prefix) && /^\d/.test(id.slice(prefix.length)) ? id : undefined;
}

/**
 * Registers `count` devices named `<prefix><n>` and resolves with their secrets. Each request
 * is all or nothing, but a fleet above 10,000 takes several: `onRegistered` hears the devices
 * registered so far after each, so that a failure later does not lose the secrets (shown
 * once) of those already registered. A failure names how many were.
 *
 * Refused (CONFLICT, nothing registered) when a device `<prefix><digits>` exists, of an
 * earlier run whatever its size: ids are zero-padded to the width of `count`, so a smaller
 * run after sim-01..sim-20 would otherwise register sim-1 and sim-2 beside them.
 */
export async function registerFleet(api: ApiClient, prefix: string, count: number, onRegistered?: (devices: SimDevice[]) => Promise<void>): Promise<SimDevice[]> {
  const taken = await firstNumbered(api, prefix);
  if (taken !== undefined) throw new UpdraftError('CONFLICT', `devices named ${prefix}<number> are registered already (${taken} is); nothing was registered`);
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
