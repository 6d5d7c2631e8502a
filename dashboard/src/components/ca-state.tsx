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

/**
 * The count of devices still on the previous CA, in words, as `ca drop-previous` judges them:
 * revoked ones are said apart (refused anyway, never refused for), and once the previous CA
 * has expired nothing is refused for it (the server ignores it; its devices are refused since).
 */
function StillOnPrevious({ found, query, expired }: { found: DeviceCount; query: string; expired: boolean }) {
  const atLeast = (n: number) => (found.complete ? count(n) : `at least ${count(n)}`);
  const devices = (n: number) => `${atLeast(n)} device${n === 1 && found.complete ? '' : 's'}`;
  const active = found.count - found.revoked;
  const list = `updraft device list --query '${query.replace(/'/g, `'\\''`)}'`;
  const partial = !found.complete && <> (counted in the first {count(found.scanned)} devices read, {COUNT_REQUESTS} requests; updraft doctor counts them all)</>;
  const revoked = found.revoked > 0 && <span data-testid="revoked-on-previous-ca">{atLeast(found.revoked)} revoked, refused anyway</span>;
  if (expired) {
    return (
      <>
        <span class="note-warn">it has expired: the server ignores it, and <code>updraft ca drop-previous</code> does not refuse for it</span>
        {found.count > 0 && (
          <>
            ; {devices(found.count)} report{found.count === 1 && found.complete ? 's' : ''} a client certificate of it{revoked && <> ({revoked})</>}, refused since it expired{partial}: give each a certificate of the current CA (<code>updraft device cert &lt;id&gt;</code>). List them: <code>{list}</code>
          </>
        )}
      </>
    );
  }
  if (found.complete && active === 0) {
    return (
      <>
        <span class="note-good">no device reports a client certificate of it</span>
        {revoked && <> besides {revoked}: <code>updraft ca drop-previous</code> does not refuse for revoked devices</>} (devices whose agents report no issuer are not counted)
      </>
    );
  }
  return (
    <>
      <span class="note-warn">
        {devices(active)} still report{active === 1 && found.complete ? 's' : ''} a client certificate of it
      </span>
      {revoked && <> (besides {revoked})</>}
      {partial}: <code>updraft ca drop-previous</code> would lock them out, and refuses while any do. List them: <code>{list}</code>
    </>
  );
}

export function CaState({ keys }: { keys: KeysView }) {
  const metrics = useApi<TlsMetrics>('/metrics');
  const tls = metrics.data?.tls;
  const previous = keys.previousCaSubject ?? null;
  const query = previous !== null ? issuerQuery(previous) : undefined;
  const expired = typeof tls?.previousCaExpiresAt === 'number' && tls.previousCaExpiresAt * 1000 <= Date.now();
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
                  ; <Expiry at={tls.previousCaExpiresAt} />
                  {expired ? ': the server ignores it, and refuses the device certificates it issued' : ': the device certificates it issued are accepted until then, or until it is dropped, and renewed onto the CA'}
                </>
              )}
            </dd>
            <dt>Devices on it</dt>
            <dd data-testid="previous-ca-devices">
              <ErrorNote error={still.error} />
              {still.data ? <StillOnPrevious found={still.data} query={query!} expired={expired} /> : !still.error && <span class="muted">counting…</span>}
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
