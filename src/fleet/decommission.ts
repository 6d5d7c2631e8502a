/**
 * Decommissioning a device (`updraft device delete`, `DELETE /api/v1/devices/:id`): a device
 * retired, scrapped or replaced leaves the registry, and nothing of it keeps a job waiting
 * or a listing full.
 *
 * In this order, so that a deletion cut short (a crash, a lost connection) can simply be
 * asked for again, and finishes what was left:
 * 1. revoked first: refused at CONNECT and at download, the connection it holds closed, and
 *    no rollout selects it any more (a revoked device is never a target);
 * 2. its unfinished job executions end REMOVED ("the device was deleted"), so their jobs
 *    can finish; finished ones stay, as the record of which job reached it. Every one is
 *    marked `details.deviceDeletedAt`: the id registered again is a new device, which an
 *    active continuous job takes up again when it comes online (`jobs/rollout-engine.ts`);
 * 3. its shadows, classic and named, are deleted (their tombstones keep the version: the id
 *    registered again continues from it, as after any shadow delete);
 * 4. it leaves the static groups that list it;
 * 5. its registration goes, at the version the revocation wrote (changed meanwhile: CONFLICT,
 *    ask again), announced as a credentials change (`device.credentials`); a shadow an
 *    operator wrote since step 3 is deleted then. The deletion is recorded with its time: the
 *    shadows' tombstones go `shadow.tombstoneRetentionHours` later
 *    (`shadow/tombstone-retention.ts`), unless the id is registered again by then.
 */
import { UpdraftError } from '../errors.ts';
import type { Sender } from '../broker/message-bus.ts';
import type { EventBus } from '../events/event-bus.ts';
import { isTerminal } from '../jobs/execution-state.ts';
import { mutateExecution } from '../jobs/execution-writer.ts';
import type { DeviceRegistry } from '../registry/device-registry.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import type { StateStore } from '../store/state-store.ts';
import { MAX_STATIC_MEMBERS } from './group-service.ts';

/** Who deletes a decommissioned device's shadows. */
const DECOMMISSION_SENDER: Sender = { kind: 'operator', id: 'decommission' };

/** What a decommissioning needs. */
export interface DecommissionDeps {
  store: StateStore;
  registry: DeviceRegistry;
  replica: ShadowReplica;
  events: EventBus;
  now?: () => number;
}

/** What was done. */
export interface Decommissioned {
  deviceId: string;
  /** Connections closed (null: an external broker's, closed when it reloads its password file; `mosquitto-config --watch` reloads it within seconds). */
  disconnected: number | null;
  /** Job ids of the executions that ended REMOVED. */
  executionsRemoved: string[];
  /** Names of the shadows deleted ('' for the classic one). */
  shadowsDeleted: string[];
  /** Static groups it was taken out of. */
  groupsLeft: string[];
}

/** Deletes a device and what hangs on it (see the top of this file); NOT_FOUND when it is not registered. */
export async function decommissionDevice(deps: DecommissionDeps, deviceId: string): Promise<Decommissioned> {
  const { store } = deps;
  const now = deps.now ?? Date.now;
  const { device, disconnected } = await deps.registry.revoke(deviceId);

  const executionsRemoved: string[] = [];
  for (const e of await store.listExecutions({ deviceId })) {
    if (e.details.deviceDeletedAt !== undefined) continue; // a deletion asked for again
    const at = now();
    const after = await mutateExecution(
      deps,
      { jobId: e.jobId, deviceId },
      (cur) => {
        if (cur.details.deviceDeletedAt !== undefined) return undefined;
        const details = { ...cur.details, deviceDeletedAt: at };
        return isTerminal(cur.status) ? { details } : { status: 'REMOVED', details: { ...details, error: 'the device was deleted' }, dueAt: undefined };
      },
      at,
    );
    if (after?.status === 'REMOVED' && !isTerminal(e.status)) executionsRemoved.push(e.jobId);
  }

  const shadowsDeleted: string[] = [];
  await deleteShadows(deps, deviceId, shadowsDeleted);

  const groupsLeft: string[] = [];
  for (const g of await store.listGroups()) {
    if (g.kind !== 'static' || !(await store.isGroupMember(g.name, deviceId))) continue;
    await store.changeGroupMembers(g.name, { add: [], remove: [deviceId], updatedAt: now(), maxMembers: MAX_STATIC_MEMBERS });
    groupsLeft.push(g.name);
  }

  if (!(await store.deleteDevice(deviceId, device.version, now()))) {
    throw new UpdraftError('CONFLICT', `device ${deviceId} changed while it was being deleted; delete it again`);
  }
  // An operator's write landing between the shadows' deletion and the registration's (a
  // script re-setting desired state when it sees `shadow.deleted`) passed the replica's
  // registration check and made the shadow again: a ghost the id registered again would
  // inherit, command included. Registration gone, such writes are refused (NOT_FOUND), so one
  // more pass leaves none.
  await deleteShadows(deps, deviceId, shadowsDeleted);
  // its registration (and with it its broker credentials) is gone: what the revocation's event
  // came too early to tell a device page open on it, whose read now says it is not registered
  deps.events.emit('device.credentials', { deviceId, change: 'deleted' });
  return { deviceId, disconnected, executionsRemoved, shadowsDeleted, groupsLeft };
}

/** Deletes every shadow `deviceId` has, adding each name deleted to `deleted` (once). */
async function deleteShadows(deps: DecommissionDeps, deviceId: string, deleted: string[]): Promise<void> {
  for (const name of await deps.store.listShadowNames(deviceId)) {
    try {
      await deps.replica.delete({ deviceId, name }, DECOMMISSION_SENDER);
      if (!deleted.includes(name)) deleted.push(name);
    } catch (err) {
      if (!(err instanceof UpdraftError && err.code === 'NOT_FOUND')) throw err; // deleted meanwhile
    }
  }
}
