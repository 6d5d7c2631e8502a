/**
 * Who is still on a CA: the fleet query on `reported.agent.certificateIssuer` (what agents report
 * of their client certificate) and a bounded count of the devices it selects. The query is
 * written as src/protocol/certificate-issuer.ts issuerQuery writes it (`updraft doctor` and
 * `ca drop-previous` use that one; test/dashboard/client-logic.test.ts checks they agree): the
 * dashboard has no X.509 parser, so the server names the CA's subject (`GET /keys`, caSubject).
 */
import { get } from './api.ts';

/** The fleet query selecting the devices reporting a client certificate issued by the CA named `subject`. */
export function issuerQuery(subject: string): string {
  return `reported.agent.certificateIssuer = "${subject.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** Requests a count sends at most: a page reads at most 10,000 devices, so 20 read 200,000. */
export const COUNT_REQUESTS = 20;

/** How many devices a query selected; `complete` false when the count stopped at COUNT_REQUESTS with more to read. */
export interface DeviceCount {
  /** Devices selected, revoked ones included. */
  count: number;
  /** How many of them are revoked (`revoked` on the item): refused anyway, so `ca drop-previous` does not refuse for them. */
  revoked: number;
  /** Devices read (matched or not). */
  scanned: number;
  complete: boolean;
}

/**
 * Counts the devices `path` (`/fleet/devices?query=…&limit=…`) selects, following `next`, at
 * most COUNT_REQUESTS requests: the page stays bounded on a fleet of millions, and says when
 * it stopped (doctor counts the whole fleet).
 */
export async function countDevices(path: string, signal?: AbortSignal): Promise<DeviceCount> {
  let count = 0;
  let revoked = 0;
  let scanned = 0;
  let after: string | undefined;
  for (let i = 0; i < COUNT_REQUESTS; i++) {
    const page = await get<{ items: { revoked?: boolean }[]; next?: string; scanned?: number }>(`${path}${after !== undefined ? `&after=${encodeURIComponent(after)}` : ''}`, signal);
    count += page.items.length;
    revoked += page.items.filter((d) => d.revoked === true).length;
    scanned += page.scanned ?? page.items.length;
    if (page.next === undefined) return { count, revoked, scanned, complete: true };
    after = page.next;
  }
  return { count, revoked, scanned, complete: false };
}
