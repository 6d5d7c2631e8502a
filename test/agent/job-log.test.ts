/** The agent's bounded log of a job (src/agent/job-log.ts), and what the server takes (src/protocol/job-log.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JobLog, teeLogger } from '../../src/agent/job-log.ts';
import { JOB_LOG_HEAD_LINES, JOB_LOG_MAX_CHARS, JOB_LOG_MAX_LINES, JOB_LOG_MAX_LINE_CHARS, parseJobLogUpload } from '../../src/protocol/job-log.ts';
import { createLogger } from '../../src/util/logger.ts';

describe('JobLog', () => {
  it('keeps the first lines and the latest ones of a long job, counting those dropped between them', () => {
    const log = new JobLog('agent:dev-1');
    for (let i = 0; i < 1000; i++) log.add(`line ${i}`);
    const { lines, dropped } = log.data();
    assert.equal(lines.length, JOB_LOG_MAX_LINES);
    assert.equal(dropped, 1000 - JOB_LOG_MAX_LINES);
    assert.deepEqual(lines.slice(0, JOB_LOG_HEAD_LINES), Array.from({ length: JOB_LOG_HEAD_LINES }, (_, i) => `line ${i}`));
    assert.equal(lines[JOB_LOG_HEAD_LINES], `line ${JOB_LOG_HEAD_LINES + dropped}`);
    assert.equal(lines.at(-1), 'line 999');
    // what it sends, the server takes
    assert.doesNotThrow(() => parseJobLogUpload({ jobId: 'j', lines, dropped }));
  });

  it('stays within the characters a log may hold, and cuts a line too long', () => {
    const log = new JobLog('agent:dev-1');
    for (let i = 0; i < 100; i++) log.add(`${i} ${'x'.repeat(JOB_LOG_MAX_LINE_CHARS * 2)}`);
    const { lines, dropped } = log.data();
    const chars = lines.reduce((n, l) => n + l.length, 0);
    assert.ok(chars <= JOB_LOG_MAX_CHARS, `${chars} characters`);
    assert.ok(lines.every((l) => l.length === JOB_LOG_MAX_LINE_CHARS && l.endsWith('…')));
    assert.equal(lines.length + dropped, 100);
    assert.ok(lines[0]!.startsWith('0 ') && lines.at(-1)!.startsWith('99 '));
    assert.doesNotThrow(() => parseJobLogUpload({ jobId: 'j', lines, dropped }));
  });

  it('goes on from a saved log (a restart), adding to what was dropped', () => {
    const log = new JobLog('agent:dev-1');
    for (let i = 0; i < JOB_LOG_MAX_LINES + 5; i++) log.add(`a${i}`);
    const again = new JobLog('agent:dev-1', log.data());
    assert.deepEqual(again.data(), log.data());
    again.add('after the restart');
    assert.equal(again.data().dropped, 6);
    assert.equal(again.data().lines.at(-1), 'after the restart');
  });

  it('keeps the lines dropping at each line added would keep, though it counts characters only when the lines are read', () => {
    // the bounds as the agent applied them at each line until the thirty-third session
    const eager = (texts: string[]) => {
      const head: string[] = [];
      const tail: string[] = [];
      let chars = 0;
      let dropped = 0;
      for (const text of texts) {
        const line = text.length > JOB_LOG_MAX_LINE_CHARS ? `${text.slice(0, JOB_LOG_MAX_LINE_CHARS - 1)}…` : text;
        (head.length < JOB_LOG_HEAD_LINES ? head : tail).push(line);
        chars += line.length;
        while (head.length + tail.length > JOB_LOG_MAX_LINES || chars > JOB_LOG_MAX_CHARS) {
          chars -= tail.shift()!.length;
          dropped++;
        }
      }
      return { lines: [...head, ...tail], dropped };
    };
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const count of [5, 40, 299, 300, 301, 700, 2000]) {
      // short and long lines mixed, some over the longest allowed: both bounds bite
      const texts = Array.from({ length: count }, (_, i) => `${i} ${'x'.repeat(Math.floor(random() ** 3 * 900))}`);
      const log = new JobLog('agent:dev-1');
      for (const t of texts) log.add(t);
      assert.deepEqual(log.data(), eager(texts), `${count} lines`);
    }
  });

  it("saves a snapshot that later lines do not change, whose JSON is the log's data at that moment", () => {
    const log = new JobLog('agent:dev-1');
    log.logger.info('phase DOWNLOADING', { jobId: 'job-1' });
    const snapshot = log.snapshot();
    const then = log.data();
    log.logger.warn('download failed, retrying', { error: 'connection reset' });
    for (let i = 0; i < 500; i++) log.add(`line ${i}`);
    assert.deepEqual(JSON.parse(JSON.stringify({ log: snapshot })), { log: then });
    assert.deepEqual({ lines: snapshot.lines, dropped: snapshot.dropped }, then);
    assert.match(then.lines[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  \[agent:dev-1\] phase DOWNLOADING jobId=job-1$/);
    // a restart goes on from it as from the data
    assert.deepEqual(new JobLog('agent:dev-1', snapshot).data(), then);
  });

  it('writes what its logger logs at info and above, the tee to both loggers', () => {
    const log = new JobLog('agent:dev-1');
    const other: string[] = [];
    const both = teeLogger(createLogger({ level: 'debug', write: (l) => other.push(l) }), log.logger);
    both.debug('not in the job log');
    both.child('slot-installer').warn('rolled back', { reason: 'health check failed' });
    assert.equal(other.length, 2);
    assert.deepEqual(log.data().lines.map((l) => l.slice(25)), ['WARN  [agent:dev-1.slot-installer] rolled back reason="health check failed"']);
  });
});
