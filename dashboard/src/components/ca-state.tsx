/**
 * The Security page's device CA and TLS state, read only (the CA's actions are the CLI's:
 * `updraft ca rollover`, `ca drop-previous`): the CA's subject and expiry; during a rollover the
 * previous CA, how many devices this instance moved off it, and how many still report a client
 * certificate of it (the fleet query doctor and drop-previous use); the server certificates'
 * expiries. Expiries come from the metrics (`tls`), subjects from `GET /keys`.
 */
import { countDevices, COUNT_REQUESTS, issuerQuery, type DeviceCount } from '../ca-devices.ts';
import { count, tlsExpiry } from '../format.ts';
import { useApi } from '../hooks.ts';
import type { KeysView, TlsMetrics } from '../types.ts';
import { ErrorNote } from './error-note.tsx';

/** An expiry in words, coloured by how near it is; "not known" while the metrics are not read. */
function Expiry({ at }: { at: number | null | undefined }) {
  if (typeof at !== 'number') return null;
  const { text, tone } = tlsExpiry(at);
  return <span class={`note-${tone}`}>{text}</span>;
}

/** The count of devices still on the previous CA, in words. */
function StillOnPrevious({ found, query }: { found: DeviceCount; query: string }) {
  const n = found.complete ? count(found.count) : `at least ${count(found.count)}`;
  const list = `updraft device list --query '${query.replace(/'/g, `'\\''`)}'`;
  if (found.complete && found.count === 0) {
    return <span class="note-good">no device reports a client certificate of it (devices whose agents report no issuer are not counted)</span>;
  }
  return (
    <>
      <span class="note-warn">
        {n} device{found.count === 1 && found.complete ? '' : 's'} still report{found.count === 1 && found.complete ? 's' : ''} a client certificate of it
      </span>
      {!found.complete && <> (counted in the first {count(found.scanned)} devices read, {COUNT_REQUESTS} requests; updraft doctor counts them all)</>}: <code>updraft ca drop-previous</code> would lock them out, and refuses while any do. List them: <code>{list}</code>
    </>
  );
}

export function CaState({ keys }: { keys: KeysView }) {
  const metrics = useApi<TlsMetrics>('/metrics');
  const tls = metrics.data?.tls;
  const previous = keys.previousCaSubject ?? null;
  const query = previous !== null ? issuerQuery(previous) : undefined;
  const still = useApi<DeviceCount>(query !== undefined ? `/fleet/devices?query=${encodeURIComponent(query)}&limit=1000` : null, countDevices);
  return (
    <section aria-labelledby="ca-h">
      <h2 id="ca-h">Device CA and TLS</h2>
      <p class="muted">The CA issues devices' client certificates and the server's own. Read only here: a CA rollover and dropping the previous CA are done with the server stopped (updraft ca rollover, updraft ca drop-previous; see the security docs).</p>
      <ErrorNote error={metrics.error} />
      <dl class="facts">
        <dt>CA</dt>
        <dd data-testid="ca">
          <code>{keys.caSubject ?? 'subject not given by this server'}</code>
          {tls && (
            <>
              ; <Expiry at={tls.caExpiresAt} />
            </>
          )}
        </dd>
        {previous !== null && (
          <>
            <dt>Previous CA</dt>
            <dd data-testid="previous-ca">
              <code>{previous}</code>
              {typeof tls?.previousCaExpiresAt === 'number' && (
                <>
                  ; <Expiry at={tls.previousCaExpiresAt} />: the device certificates it issued are accepted until then, or until it is dropped, and renewed onto the CA
                </>
              )}
            </dd>
            <dt>Devices on it</dt>
            <dd data-testid="previous-ca-devices">
              <ErrorNote error={still.error} />
              {still.data ? <StillOnPrevious found={still.data} query={query!} /> : !still.error && <span class="muted">counting…</span>}
              {typeof tls?.devicesMovedOffPreviousCa === 'number' && (
                <span data-testid="moved-off-previous-ca">
                  {' '}
                  · {count(tls.devicesMovedOffPreviousCa)} moved off it by this server since it started
                </span>
              )}
            </dd>
          </>
        )}
        {tls && (
          <>
            <dt>Server certificates</dt>
            <dd data-testid="server-certificates">
              MQTTS: {tls.mqttCertificateExpiresAt === null ? 'not served by this server' : <Expiry at={tls.mqttCertificateExpiresAt} />}; HTTPS: {tls.httpCertificateExpiresAt === null ? 'not served by this server' : <Expiry at={tls.httpCertificateExpiresAt} />}
            </dd>
          </>
        )}
      </dl>
    </section>
  );
}
