/** Maintenance windows: when a rollout may send, in a time zone, across midnight and daylight saving. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWindow } from '../../src/cli/rollout-commands.ts';
import { inWindow, nextOpening, type MaintenanceWindow } from '../../src/protocol/maintenance-window.ts';

const utc = (d: number, h: number, m = 0) => Date.UTC(2026, 0, d, h, m); // 2026-01-01 is a Thursday

describe('maintenance windows', () => {
  it('opens at its start for its minutes, every day', () => {
    const w: MaintenanceWindow[] = [{ start: '02:00', minutes: 120 }];
    assert.equal(inWindow(w, utc(1, 1, 59)), false);
    assert.equal(inWindow(w, utc(1, 2, 0)), true);
    assert.equal(inWindow(w, utc(1, 3, 59)), true);
    assert.equal(inWindow(w, utc(1, 4, 0)), false);
    assert.equal(inWindow(w, utc(7, 2, 30)), true);
  });

  it('runs past midnight, and the days are those it opens on', () => {
    const w: MaintenanceWindow[] = [{ start: '23:00', minutes: 180, days: ['sat'] }];
    assert.equal(inWindow(w, utc(3, 23, 30)), true, 'Saturday 23:30');
    assert.equal(inWindow(w, utc(4, 1, 30)), true, 'Sunday 01:30: opened on Saturday');
    assert.equal(inWindow(w, utc(4, 2, 0)), false, 'Sunday 02:00: closed');
    assert.equal(inWindow(w, utc(4, 23, 30)), false, 'Sunday 23:30: not a Saturday');
    assert.equal(inWindow(w, utc(3, 1, 30)), false, 'Saturday 01:30: opened on Friday');
  });

  it('reads the wall clock of its time zone, daylight saving included', () => {
    const w: MaintenanceWindow[] = [{ start: '02:00', minutes: 60 }];
    // Madrid is UTC+1 in January, UTC+2 in July
    assert.equal(inWindow(w, utc(15, 1, 30), 'Europe/Madrid'), true, '02:30 in Madrid in winter');
    assert.equal(inWindow(w, utc(15, 2, 30), 'Europe/Madrid'), false);
    assert.equal(inWindow(w, Date.UTC(2026, 6, 15, 0, 30), 'Europe/Madrid'), true, '02:30 in Madrid in summer');
    assert.equal(inWindow(w, Date.UTC(2026, 6, 15, 1, 30), 'Europe/Madrid'), false);
  });

  it('finds when the next window opens', () => {
    assert.equal(nextOpening([{ start: '02:00', minutes: 60 }], utc(1, 0, 0)), utc(1, 2, 0));
    assert.equal(nextOpening([{ start: '02:00', minutes: 60 }], utc(1, 3, 0)), utc(2, 2, 0));
    assert.equal(nextOpening([{ start: '22:00', minutes: 60, days: ['sun'] }, { start: '06:30', minutes: 30, days: ['mon'] }], utc(1, 12, 0)), utc(4, 22, 0));
    assert.equal(nextOpening([{ start: '02:00', minutes: 60 }], utc(15, 0, 0), 'Europe/Madrid'), utc(15, 1, 0));
    // the night Madrid moves to summer time (29 March 2026: 02:00 becomes 03:00), a 03:00 window opens at 01:00 UTC
    assert.equal(nextOpening([{ start: '03:00', minutes: 60 }], Date.UTC(2026, 2, 28, 23, 0), 'Europe/Madrid'), Date.UTC(2026, 2, 29, 1, 0));
  });

  it('reads the CLI form', () => {
    assert.deepEqual(parseWindow('2:00+120'), { start: '02:00', minutes: 120 });
    assert.deepEqual(parseWindow('22:30+240@Sat,sun'), { start: '22:30', minutes: 240, days: ['sat', 'sun'] });
    assert.throws(() => parseWindow('02:00-120'), /--window 02:00-120 must look like 02:00\+120 or 22:00\+240@sat,sun/);
  });
});
