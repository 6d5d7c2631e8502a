/**
 * `reported.agent.certificateIssuer`: the issuer's distinguished name of the client certificate
 * an agent uses, so that the fleet can be asked which devices are still on a CA, e.g. the
 * previous CA of a rollover before `updraft ca drop-previous` (docs/security.md). The agent
 * writes it and the CLI compares it with a CA's subject written the same way, so both go
 * through `distinguishedName`: Node's form (`X509Certificate.issuer`/`.subject`, one
 * `attribute=value` a line, in the certificate's order) with its lines joined by ', ', e.g.
 * `CN=Updraft device CA 2026-12-06 12:45:03Z, O=Updraft`.
 */
import { X509Certificate } from 'node:crypto';

/**
 * The longest issuer an agent reports, in characters: the shadow takes any JSON within its
 * document cap (8 KiB), and a DN has no length limit of its own; a longer one is cut (and
 * then equals no CA's subject, which is what it would be: no CA of Updraft's names itself so).
 */
export const MAX_CERTIFICATE_ISSUER = 512;

/** A DN as Node gives it (`X509Certificate.issuer`, `.subject`: one `attribute=value` a line) on one line, joined with ', '. */
export function distinguishedName(nodeDn: string): string {
  return nodeDn.split('\n').filter((part) => part !== '').join(', ');
}

/**
 * The issuer of a PEM certificate as reported (`distinguishedName`, at most
 * MAX_CERTIFICATE_ISSUER characters); undefined when it is no certificate.
 */
export function certificateIssuer(pem: string): string | undefined {
  let dn: string;
  try {
    dn = distinguishedName(new X509Certificate(pem).issuer);
  } catch {
    return undefined;
  }
  return dn.length > MAX_CERTIFICATE_ISSUER ? `${dn.slice(0, MAX_CERTIFICATE_ISSUER - 1)}…` : dn;
}

/** The subject of a PEM CA certificate, written as agents report an issuer: what their `certificateIssuer` equals when it issued theirs. */
export function caSubject(pem: string): string {
  return distinguishedName(new X509Certificate(pem).subject);
}

/**
 * The fleet query selecting the devices that report a client certificate issued by the CA
 * named `subject` (`=`), or by another CA than it (`!=`: devices that report no issuer left out).
 */
export function issuerQuery(subject: string, op: '=' | '!=' = '='): string {
  const field = 'reported.agent.certificateIssuer';
  const compare = `${field} ${op} "${subject.replace(/["\\]/g, (c) => `\\${c}`)}"`;
  // `!=` holds for a missing field too (fleet/query.ts)
  return op === '=' ? compare : `${field} exists and ${compare}`;
}
