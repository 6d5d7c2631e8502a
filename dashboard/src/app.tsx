/**
 * The shell: sign-in gate, skip link, navigation, the live indicator, and the page for the
 * current path. Focus moves to the page's main region after navigation, so keyboard and
 * screen-reader users start reading the new page, not the old link.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useErrorBoundary, useRef, useState } from 'preact/hooks';
import { get } from './api.ts';
import { getIdentity, getToken, getViewer, onAuthChange, setIdentity, setToken } from './auth.ts';
import { ErrorNote, Loading } from './components/error-note.tsx';
import { useReadOnly, useStreamStatus } from './hooks.ts';
import { ArtifactsPage } from './pages/artifacts.tsx';
import { DevicePage } from './pages/device.tsx';
import { DevicesPage } from './pages/devices.tsx';
import { JobNewPage } from './pages/job-new.tsx';
import { JobPage } from './pages/job.tsx';
import { JobsPage } from './pages/jobs.tsx';
import { LoginPage } from './pages/login.tsx';
import { OverviewPage } from './pages/overview.tsx';
import { SecurityPage } from './pages/security.tsx';
import { HealthPage } from './pages/health.tsx';
import { FleetQueryPage } from './pages/fleet-query.tsx';
import { Link, match, useLocation } from './router.tsx';

const NAV = [
  { href: '/', label: 'Overview' },
  { href: '/devices', label: 'Devices' },
  { href: '/artifacts', label: 'Artifacts' },
  { href: '/jobs', label: 'Jobs' },
  { href: '/security', label: 'Security' },
  { href: '/health', label: 'Health' },
];

function page(path: string) {
  if (path === '/') return { title: 'Overview', node: <OverviewPage /> };
  if (path === '/devices') return { title: 'Devices', node: <DevicesPage /> };
  if (path === '/artifacts') return { title: 'Artifacts', node: <ArtifactsPage /> };
  if (path === '/jobs') return { title: 'Jobs', node: <JobsPage /> };
  if (path === '/security') return { title: 'Security', node: <SecurityPage /> };
  if (path === '/health') return { title: 'Health', node: <HealthPage /> };
  if (path === '/fleet') return { title: 'Devices by query', node: <FleetQueryPage /> };
  if (path === '/jobs/new') return { title: 'New rollout', node: <JobNewPage /> };
  let m = match('/devices/:id', path);
  if (m) return { title: `Device ${m.id}`, node: <DevicePage key={m.id} id={m.id!} /> };
  m = match('/jobs/:id', path);
  if (m) return { title: 'Job', node: <JobPage key={m.id} id={m.id!} /> };
  return {
    title: 'Not found',
    node: (
      <>
        <h1>Page not found</h1>
        <p>
          There is no page at {path}. <Link href="/">Go to the overview</Link>.
        </p>
      </>
    ),
  };
}

/**
 * A page that throws while rendering (an answer of a shape it does not expect: an older or
 * newer server instance behind the same balancer during a rolling upgrade) shows its error
 * where the page would be, with the navigation kept and a way to try again, instead of the
 * whole tab going blank (Preact unmounts the tree on an uncaught render error). Keyed by the
 * path, so another page starts clean.
 */
function PageBoundary({ children }: { children: ComponentChildren }) {
  const [error, reset] = useErrorBoundary((err: unknown) => console.error('the page failed to render', err));
  if (error) {
    return (
      <>
        <h1>This page could not be shown</h1>
        <p class="error" role="alert">
          The page failed to render: {error instanceof Error ? error.message : String(error)}. Another page, or trying again, may work; if this keeps happening, the server may be answering in a form this dashboard does not know (an upgrade in progress?).
        </p>
        <button type="button" onClick={reset}>
          Try again
        </button>
      </>
    );
  }
  return <>{children}</>;
}

/** Pages that decide what they read by the token's role: shown once the server said it. */
const ROLE_FIRST = new Set(['/jobs/new', '/security']);

/** The state of the page's live updates; absent on a page that reads no event stream (it would say nothing true). */
function LiveIndicator() {
  const status = useStreamStatus();
  if (status === undefined) return null;
  const text = status === 'live' ? 'Live' : status === 'connecting' ? 'Connecting…' : 'Reconnecting…';
  return (
    <span class={`live live-${status}`} role="status" aria-label={`Live updates: ${text}`}>
      {text}
    </span>
  );
}

/**
 * Who the stored token is, asked of the server (`GET /api/v1/whoami`) when the tab has a token
 * but no answer for it (a reload, a token put in storage by other means than the form): true once
 * known. Asked alongside the page's own reads, not before them (until then no operator control
 * shows). A refused token signs the tab out (api.ts); no answer is asked again every 2 s, and said.
 */
function useIdentity(signedIn: boolean): { known: boolean; error: Error | undefined } {
  const [known, setKnown] = useState(getIdentity() !== undefined);
  const [error, setError] = useState<Error | undefined>();
  const [attempt, setAttempt] = useState(0);
  useEffect(() => onAuthChange(() => setKnown(getIdentity() !== undefined)), []);
  useEffect(() => {
    const token = getToken();
    if (!signedIn || known || token === null) return;
    const controller = new AbortController();
    let retry: ReturnType<typeof setTimeout> | undefined;
    get<{ role?: string; name?: string }>('/whoami', controller.signal).then(
      (who) => {
        setError(undefined);
        setIdentity(token, { role: who.role === 'operator' ? 'operator' : 'viewer', ...(typeof who.name === 'string' ? { name: who.name } : {}) });
      },
      (err: Error) => {
        if (err.name === 'AbortError') return;
        setError(err);
        retry = setTimeout(() => setAttempt((n) => n + 1), 2000);
      },
    );
    return () => {
      controller.abort();
      clearTimeout(retry);
    };
  }, [signedIn, known, attempt]);
  return { known, error };
}

export function App() {
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const readOnly = useReadOnly();
  useEffect(() => onAuthChange(() => setSignedIn(getToken() !== null)), []);
  const identity = useIdentity(signedIn);
  const { path } = useLocation();
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  const current = signedIn ? page(path) : { title: 'Sign in', node: null };
  useEffect(() => {
    document.title = `${current.title} · Updraft`;
    if (first.current) first.current = false;
    else main.current?.focus();
  }, [path, signedIn]);

  if (!signedIn) return <LoginPage />;
  const section = '/' + (path.split('/')[1] ?? '');
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Updraft</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map((n) => (
              <li key={n.href}>
                <Link href={n.href} aria-current={section === n.href ? 'page' : undefined}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <LiveIndicator />
        {readOnly && identity.known && (
          <span class="read-only" role="note">
            Read-only: viewer token {getViewer()}
          </span>
        )}
        <button type="button" class="secondary" onClick={() => setToken(null)}>
          Sign out
        </button>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {/* the page's own reads go out with /whoami, not after it: it shows no operator control
            until the server said operator (useReadOnly), then gains them. New rollout and
            Security decide what they read by it, so they wait for it (ROLE_FIRST) */}
        {!identity.known && <ErrorNote error={identity.error && new Error(`What this token may do cannot be read: ${identity.error.message} (asking again)`)} />}
        <PageBoundary key={path}>{identity.known || !ROLE_FIRST.has(path) ? current.node : !identity.error && <Loading what="what this token may do" />}</PageBoundary>
      </main>
    </>
  );
}
