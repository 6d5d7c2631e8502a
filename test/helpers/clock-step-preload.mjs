// Preloaded into a child process (NODE_OPTIONS="--import <this file>") to step its wall clock
// as NTP or someone setting the clock by hand would: Date.now(), new Date() and Date() read
// the real time plus the milliseconds written in the file $UPDRAFT_TEST_CLOCK_STEP_FILE (read
// again at most every 20 ms), which the test rewrites while the process runs. The monotonic
// clocks (performance.now(), process.hrtime, timers) are left alone, as a real step leaves
// them. Plain JavaScript: it loads before tsx is registered.
import { readFileSync } from 'node:fs';

const file = process.env.UPDRAFT_TEST_CLOCK_STEP_FILE;
if (file) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  let step = 0;
  let readAt = -Infinity;
  const currentStep = () => {
    const t = performance.now();
    if (t - readAt >= 20) {
      readAt = t;
      try {
        step = Number(readFileSync(file, 'utf8').trim()) || 0;
      } catch {
        step = 0;
      }
    }
    return step;
  };
  class SteppedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(realNow() + currentStep());
      else super(...args);
    }
    static now() {
      return realNow() + currentStep();
    }
  }
  // Date() called without new returns the current time as a string
  globalThis.Date = new Proxy(SteppedDate, { apply: () => new SteppedDate().toString() });
}
