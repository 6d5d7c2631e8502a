/**
 * Which live events the Devices page reads its search again for. Its columns change with a
 * device's presence (connection), its credentials (revoked; a device registered or deleted
 * comes or goes) and its executions (the command sent sets the desired version; each report
 * of the device moves its update status, and its success the version it runs). Presence and
 * credentials come by stream; executions do not: during a rollout they come by the thousand
 * per second from the whole fleet (the stream's `deviceId` filter takes one device), and each
 * open tab would cost the server a copy of each, when it is busiest. The page polls for them
 * instead, as the overview does (devices.tsx). A page shows 25 devices: only events of its
 * devices count, unless its filters select by what they change (a device may come into the
 * page or leave it).
 */
import type { StreamEvent } from './sse.ts';

/** The event types the Devices page's stream carries. */
export const DEVICE_SEARCH_EVENTS = 'device.presence,device.credentials';

/** Whether `event` may change the search shown: its filters (by name, '' when not set) and the device ids it shows. */
export function touchesSearch(event: StreamEvent, filters: { state?: string; version?: string }, shown: ReadonlySet<string>): boolean {
  // registered, revoked, reinstated, deleted: rare, and a device not shown may be one to show
  if (event.type === 'device.credentials') return true;
  const deviceId = (event.data as { deviceId?: unknown } | null)?.deviceId;
  if (typeof deviceId === 'string' && shown.has(deviceId)) return true;
  // a device not shown that may now match: by state (online, offline, updating, failed), or by
  // the version it runs (which its execution's success changed)
  if (event.type === 'device.presence') return Boolean(filters.state);
  if (event.type === 'execution.changed') return Boolean(filters.state || filters.version);
  return false;
}
