/**
 * The set-up of agent tests that read what the agent logs: a fresh AgentFixture for each test
 * of the enclosing `describe`, the lines its agents log, and an agent started and caught up.
 */
import { afterEach, beforeEach } from 'node:test';
import type { UpdateAgent } from '../../../src/agent/agent.ts';
import type { UpdateAgentOptions } from '../../../src/agent/agent-options.ts';
import type { Installer } from '../../../src/agent/installer.ts';
import { createLogger, type LogFormat, type LogLevel, type Logger } from '../../../src/util/logger.ts';
import { AgentFixture } from './agent-fixture.ts';

/** The running test's fixture and log. */
export interface FixtureContext {
  /** The fixture of the running test (started before it, closed after it). */
  readonly f: AgentFixture;
  /** What the running test's agents logged through `logger()`, one line each. */
  readonly lines: string[];
  /** A logger writing to `lines`, at the level and in the format the describe asked for. */
  logger(): Logger;
  /**
   * An agent logging to `lines`, started, once the server has its connect report and `get`
   * (handled after a later `setDesired`, they would bring a second delta with a fresh URL).
   */
  started(installer: Installer, extra?: Partial<UpdateAgentOptions>): Promise<UpdateAgent>;
}

/** Registers the hooks in the enclosing `describe`: call it there, read the context in tests. */
export function fixturePerTest(log: { level?: LogLevel; format?: LogFormat } = {}): FixtureContext {
  let f: AgentFixture | undefined;
  let lines: string[] = [];
  beforeEach(async () => {
    f = new AgentFixture();
    await f.start();
    lines = [];
  });
  afterEach(() => f?.close());
  const ctx: FixtureContext = {
    get f() {
      if (!f) throw new Error('fixturePerTest: no test is running');
      return f;
    },
    get lines() {
      return lines;
    },
    logger: () => createLogger({ ...log, write: (l) => lines.push(l) }),
    async started(installer, extra = {}) {
      const agent = ctx.f.agent(installer, { logger: ctx.logger(), ...extra });
      await agent.start();
      await ctx.f.server.until(() => ctx.f.server.reports.length >= 1 && ctx.f.server.gets >= 1, 'the connect report and get');
      return agent;
    },
  };
  return ctx;
}
