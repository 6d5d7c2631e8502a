/**
 * The shell: sign-in gate, skip link, navigation, the live indicator, and the page for the
 * current path. Focus moves to the page's main region after navigation, so keyboard and
 * screen-reader users start reading the new page, not the old link.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { getToken, getViewer, onAuthChange, setToken } from './auth.ts';
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
import { Link, match, useLocation } from './router.tsx';

const NAV = [
  { href: '/', label: 'Overview' },
  { href: '/devices', label: 'Devices' },
  { href: '/artifacts', label: 'Artifacts' },
  { href: '/jobs', label: 'Jobs' },
  { href: '/security', label: 'Security' },
];

function page(path: string) {
  if (path === '/') return { title: 'Overview', node: <OverviewPage /> };
  if (path === '/devices') return { title: 'Devices', node: <DevicesPage /> };
  if (path === '/artifacts') return { title: 'Artifacts', node: <ArtifactsPage /> };
  if (path === '/jobs') return { title: 'Jobs', node: <JobsPage /> };
  if (path === '/security') return { title: 'Security', node: <SecurityPage /> };
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

export function App() {
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const readOnly = useReadOnly();
  useEffect(() => onAuthChange(() => setSignedIn(getToken() !== null)), []);
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
        {readOnly && (
          <span class="read-only" role="note">
            Read-only: viewer token {getViewer()}
          </span>
        )}
        <button type="button" class="secondary" onClick={() => setToken(null)}>
          Sign out
        </button>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {current.node}
      </main>
    </>
  );
}
