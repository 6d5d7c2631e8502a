/**
 * The daemon's TLS files (`--ca`, `--cert`, `--key`): checked before the agent starts, and read
 * again as each reconnect attempt starts, so that a file replaced on the device (a CA bundle
 * for a rollover, a certificate issued by `updraft device cert`) is used from the next
 * connection without a restart. They were read at start only, and docs/security.md told
 * operators to restart the agent after replacing `--ca`; one left running kept refusing the
 * server's new-CA certificate after the switch (QA of the CA rollover, 2026-12-06).
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { UpdraftError } from '../errors.ts';
import type { Logger } from '../util/logger.ts';

/** TLS material for an `mqtts://` broker: PEM texts. */
export interface TlsMaterial {
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * Checks TLS material: every certificate of the CA bundle parses and none is cut off, and the
 * certificate and its key make a client context. BAD_REQUEST naming the option and its file
 * (`files`) otherwise: OpenSSL's own words ("PEM routines::no start line") name neither.
 */
export function checkTlsMaterial(tls: TlsMaterial, files: TlsMaterial): void {
  // a CA that is no certificate is skipped by createSecureContext, not refused
  if (tls.ca !== undefined) {
    try {
      new X509Certificate(tls.ca);
    } catch (err) {
      throw new UpdraftError('BAD_REQUEST', `--ca ${files.ca} is not a usable CA certificate (PEM): ${(err as Error).message}`);
    }
    // and every certificate of a bundle: one cut off, or that does not parse, was skipped, and
    // the agent started, to refuse the server's certificate of that CA later (a CA rollover's
    // bundle cut short in its second certificate: QA, 2026-12-06)
    const begins = tls.ca.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
    const blocks = tls.ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const certs = blocks.map((block, i) => {
      try {
        return new X509Certificate(block);
      } catch (err) {
        throw new UpdraftError('BAD_REQUEST', `--ca ${files.ca}: certificate ${i + 1} of ${begins} is not a usable CA certificate (PEM): ${(err as Error).message}`);
      }
    });
    certs.forEach((cert, i) => {
      const problem = corruptedRootProblem(cert, certs);
      if (problem !== undefined) throw new UpdraftError('BAD_REQUEST', `--ca ${files.ca}: certificate ${i + 1} of ${begins} (${oneLineName(cert.subject)}) ${problem}`);
    });
    if (blocks.length < begins) throw new UpdraftError('BAD_REQUEST', `--ca ${files.ca}: certificate ${blocks.length + 1} of ${begins} is cut off (a BEGIN CERTIFICATE line with no END line)`);
  }
  if (tls.cert !== undefined && tls.key !== undefined) {
    try {
      createSecureContext({ cert: tls.cert, key: tls.key } satisfies SecureContextOptions);
    } catch (err) {
      throw new UpdraftError('BAD_REQUEST', `--cert ${files.cert} and --key ${files.key} are not a usable certificate and its private key (PEM): ${(err as Error).message}`);
    }
  }
}

/**
 * Why a self-issued CA certificate (a root: its issuer is itself) cannot be trusted, or
 * undefined. One character changed inside its body (a copy damaged on the way to the device)
 * may still parse, with another public key, and a signature that key does not verify: the
 * agent took it without a word, asked to move to that "next CA" and, after the switch, was
 * refused by every server certificate of the real one (`certificate signature failure`; QA of
 * a CA rollover, 2026-12-06). A CA issued by another (an intermediate) is not checked: its
 * issuer's key may not be in the bundle. One verified by another certificate of the bundle is
 * no damage either: an RFC 5280 self-issued link certificate (a re-keyed CA signed by its old
 * key, same name) was refused (review of 0655353).
 */
function corruptedRootProblem(cert: X509Certificate, bundle: X509Certificate[]): string | undefined {
  if (cert.subject !== cert.issuer && !cert.checkIssued(cert)) return undefined;
  if (cert.verify(cert.publicKey) || bundle.some((other) => other !== cert && cert.checkIssued(other) && cert.verify(other.publicKey))) return undefined;
  return 'is self-signed, but its signature does not verify with its own key: the copy is damaged; copy the CA certificate again from the server (<data-dir>/pki/ca.crt, or pki/next-ca.crt during a CA rollover)';
}

/** A distinguished name as X509Certificate gives it (a line per attribute), on one line. */
function oneLineName(name: string): string {
  return name.split('\n').filter((l) => l !== '').join(', ');
}

/**
 * True while the agent's own renewal writes its pair (`saveRenewedFiles`: `<cert>.renewed`,
 * for the few milliseconds of its renames). One older than a minute was left by a save that
 * failed (a full disk): the next start settles it, and until then the files are read as they
 * are, rather than never again (review, 2026-12-06).
 */
function renewalUnderWay(file: string): boolean {
  try {
    // a time ahead of the clock (stepped back after the write, a device without a clock battery) is no sign of a write under way;
    // but a file written this very millisecond is up to one ahead: Date.now() drops the fraction mtimeMs keeps (tls-files.test.ts failed one run in five)
    const age = Date.now() - statSync(file).mtimeMs;
    return age > -1 && age < 60_000;
  } catch {
    return false;
  }
}

/**
 * A reader of the TLS files given (`files`: their paths), for the agent's `reloadTls`: each
 * `read` reads them (synchronously: a few small files, as a connection attempt starts) and
 * returns them when they differ from what the MQTT client uses (`inUse`, which the agent
 * passes), undefined otherwise. They were compared with what the reader had read or written
 * last: an agent stopped and started again went back to its `mqttOptions` (the files as they
 * were at first) and was never handed the files renewed or replaced since, unchanged for the
 * reader (review, 2026-12-06). Without `inUse`, what was read or written last (`current` at
 * first) stands for it. A set that is not usable (a half-written bundle, a certificate without
 * its key) is said once (WARN) and not returned: the connection goes on with what it has.
 * While the agent's own renewal writes the pair (`<cert>.renewed` present) nothing is read.
 * The INFO line says a change on disk, once: files that differ from what the reader read or
 * the renewal wrote (`written`) last; handing them to a restarted agent is said at debug.
 */
export class TlsFileReader {
  private last: TlsMaterial;
  private refused: string | undefined;

  constructor(
    private readonly files: TlsMaterial,
    current: TlsMaterial,
    private readonly log: Logger,
    /** Put before each line (the daemon's `<device>: `, as its other lines). */
    private readonly prefix = '',
  ) {
    this.last = current;
  }

  /** The agent's own renewal wrote `pair` over the files: what they hold now, not a change to say. */
  written(pair: { cert: string; key: string }): void {
    this.last = { ...this.last, ...pair };
  }

  /** The files when usable and not what `inUse` holds (the client's material); undefined otherwise. */
  read(inUse?: TlsMaterial): TlsMaterial | undefined {
    const files = this.files;
    if (files.cert !== undefined && renewalUnderWay(`${files.cert}.renewed`)) return undefined;
    const read: TlsMaterial = {};
    try {
      for (const k of ['ca', 'cert', 'key'] as const) if (files[k] !== undefined) read[k] = readFileSync(files[k]!, 'utf8');
    } catch (err) {
      return this.warnOnce(`cannot read them: ${(err as Error).message}`);
    }
    const same = (a: TlsMaterial, b: TlsMaterial) => a.ca === b.ca && a.cert === b.cert && a.key === b.key;
    const last = this.last;
    // only what was given is compared: a client with no --ca of its own (the system's roots) is handed none
    const used = inUse ?? last;
    const given = (['ca', 'cert', 'key'] as const).filter((k) => read[k] !== undefined);
    if (given.every((k) => read[k] === used[k])) return undefined;
    // checked once per set: the set read last was checked when it was read
    if (!same(read, last) || this.refused !== undefined) {
      try {
        checkTlsMaterial(read, files);
      } catch (err) {
        return this.warnOnce((err as Error).message);
      }
    }
    this.refused = undefined;
    if (same(read, last)) {
      this.log.debug(`${this.prefix}TLS files differ from what the connection used: used from this connection attempt`);
      return read;
    }
    const changed = (['ca', 'cert', 'key'] as const).filter((k) => read[k] !== last[k]).map((k) => `--${k}`);
    this.log.info(`${this.prefix}TLS files changed on disk: used from this connection attempt`, { changed: changed.join(' ') });
    this.last = read;
    return read;
  }

  private warnOnce(why: string): undefined {
    if (why !== this.refused) this.log.warn(`${this.prefix}TLS files changed on disk but are not usable: the ones read before are used`, { reason: why });
    this.refused = why;
    return undefined;
  }
}
