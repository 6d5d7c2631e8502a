/**
 * Retention of deleted devices' shadow tombstones (`shadow.tombstoneRetentionHours`).
 *
 * A deleted shadow keeps its row, without state, so that its version is never reused (the
 * name created again goes on from it: protocol.md, delete). A device deleted for good
 * (`updraft device delete`) leaves its classic shadow's tombstone and those of its named
 * shadows (up to `shadow.maxNamedShadows` of them), and a fleet that retires and replaces
 * devices every year would keep every one for ever. AWS IoT keeps a deleted shadow's version
 * for 48 hours, then a shadow made again under the name starts over; Updraft does the same,
 * for deleted devices only: `hours` after a device's deletion (recorded with it by
 * `StateStore.deleteDevice`), its tombstones are removed, unless the id was registered again
 * meanwhile (a registered device's tombstones are bounded per device, and its versions are
 * kept). The id registered after that starts its shadows at version 1.
 *
 * Every `everyMs`, the instance that leads rollouts (one instance: two would only do the same
 * work) removes those of up to `perPass` devices a batch, a few batches a pass, so that a pass
 * never holds the store long and a backlog (the devices deleted before this release, listed
 * by the migration that brought it) is worked off over a few passes. Off (no timer at all)
 * with `hours` 0.
 *
 * On PostgreSQL, where instances of two releases may share the database during a rolling
 * upgrade, a deletion made by the earlier release is not recorded: the leader lists such
 * devices from their tombstones at its first pass and then daily (`listUnrecordedDeletions`).
 *
 * Replicas' cached copies need nothing: a cached tombstone answers a `get` or `delete` as a
 * missing row does (404), and a write judged on it is conditional on its version, which the
 * store no longer holds, so it is retried from the store (`ShadowReplica.applyUpdate`).
 */
import { asUpdraftError } from '../errors.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { PeriodicPass } from '../util/periodic-pass.ts';

/** What the sweep needs. */
export interface TombstoneRetentionDeps {
  store: Pick<StateStore, 'expireDeletedDevices' | 'listUnrecordedDeletions'>;
  /** True on the instance that leads rollouts: the only one that sweeps. */
  isLeader: () => boolean;
  /** Hours a deleted device's tombstones are kept after its deletion; 0: for ever (nothing runs). */
  hours: number;
  logger: Logger;
  /** Milliseconds since the epoch: the clock deletions are stamped with (the cluster's, with PostgreSQL). */
  now?: () => number;
  /** Between two passes, in ms; default 10 minutes. */
  everyMs?: number;
  /** Devices whose tombstones one batch removes; default 500. */
  perBatch?: number;
  /** Batches in one pass; default 10. */
  batchesPerPass?: number;
  /** How often the deletions no release recorded are listed (`listUnrecordedDeletions`), in ms; default a day. */
  listEveryMs?: number;
  /** The monotonic clock that spaces those listings (tests). */
  monotonic?: () => number;
}

/** Defaults of the sweep's tuning. */
export const TOMBSTONE_RETENTION_DEFAULTS = { everyMs: 10 * 60_000, perBatch: 500, batchesPerPass: 10, listEveryMs: 86_400_000 } as const;

const HOUR_MS = 3_600_000;

/** Removes deleted devices' shadow tombstones past their retention, on the instance leading rollouts. */
export class TombstoneRetention {
  private readonly deps: TombstoneRetentionDeps;
  /** The passes' timer; from stop() on (`stopping`) a pass ends after its batch under way. */
  private readonly timer: PeriodicPass;
  /** When this instance last listed the deletions no release recorded (monotonic ms). */
  private listedAt: number | undefined;

  constructor(deps: TombstoneRetentionDeps) {
    this.deps = deps;
    this.timer = new PeriodicPass(() => this.pass(), deps.everyMs ?? TOMBSTONE_RETENTION_DEFAULTS.everyMs, (err) =>
      deps.logger.warn("deleted devices' shadow tombstones not removed; the next pass tries again", { error: asUpdraftError(err).message }),
    );
  }

  async start(): Promise<void> {
    if (this.deps.hours > 0) this.timer.start();
  }

  async stop(): Promise<void> {
    await this.timer.stop();
  }

  private get stopping(): boolean {
    return this.timer.stopping;
  }

  /**
   * One pass: the devices deleted more than `hours` ago, oldest first, `perBatch` at a time,
   * until a batch finds fewer or `batchesPerPass` ran; nothing on an instance that does not
   * lead rollouts, or with `hours` 0. Resolves with what was removed.
   */
  async pass(): Promise<{ devices: number; tombstones: number }> {
    const { hours, store, logger } = this.deps;
    const done = { devices: 0, tombstones: 0 };
    if (hours <= 0 || this.stopping || !this.deps.isLeader()) return done;
    // deletions an instance of an earlier release made on this database during a rolling
    // upgrade are not in the list: listed from their tombstones, at the first pass and daily
    const mono = (this.deps.monotonic ?? performance.now.bind(performance))();
    if (store.listUnrecordedDeletions && (this.listedAt === undefined || mono - this.listedAt >= (this.deps.listEveryMs ?? TOMBSTONE_RETENTION_DEFAULTS.listEveryMs))) {
      const listed = await store.listUnrecordedDeletions();
      this.listedAt = mono;
      if (listed > 0) logger.info('devices deleted without a record of it (by an earlier release) listed for the tombstones\' retention', { devices: listed });
    }
    const before = (this.deps.now ?? Date.now)() - hours * HOUR_MS;
    const perBatch = this.deps.perBatch ?? TOMBSTONE_RETENTION_DEFAULTS.perBatch;
    const batches = this.deps.batchesPerPass ?? TOMBSTONE_RETENTION_DEFAULTS.batchesPerPass;
    for (let b = 0; b < batches && !this.stopping && this.deps.isLeader(); b++) {
      const { devices, tombstones } = await store.expireDeletedDevices(before, perBatch);
      done.devices += devices.length;
      done.tombstones += tombstones;
      if (devices.length < perBatch) break;
    }
    if (done.devices > 0) logger.info("deleted devices' shadow tombstones removed after their retention", { ...done, retentionHours: hours });
    return done;
  }
}
