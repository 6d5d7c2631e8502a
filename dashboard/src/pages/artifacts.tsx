/**
 * Artifacts: the builds, newest first, one server page (100) at a time, with version, size,
 * SHA-256, what each may be installed on (device types, the versions it installs over) and
 * whether its signature is the current signing key's; upload a build from the browser (raw
 * bytes, with progress); delete one, after a confirmation in the page (refused while a job
 * that is not finished installs it). The page is in the URL as on Jobs (`after`: its cursor;
 * `newer`, repeated: those of the pages before it, the last 40), so back, forward and bookmarks keep it;
 * a URL with `after` alone goes to the newest page on "Newer builds".
 * Live: a build added or deleted elsewhere (the CLI, another tab) shows at once (`artifact.changed`).
 */
import { useState } from 'preact/hooks';
import { api, ApiError, upload } from '../api.ts';
import { ConfirmAction } from '../components/confirm-action.tsx';
import { ErrorNote, Loading } from '../components/error-note.tsx';
import { Field } from '../components/field.tsx';
import { StatusBadge } from '../components/status-badge.tsx';
import { TableScroll } from '../components/table-scroll.tsx';
import { bytes, dateTime } from '../format.ts';
import { useLiveList, useReadOnly } from '../hooks.ts';
import { pageUrl as trailUrl } from '../job-pages.ts';
import { navigate, useLocation } from '../router.tsx';
import type { Artifact, Page } from '../types.ts';

export function ArtifactsPage() {
  const { query } = useLocation();
  const after = query.get('after');
  const newer = query.getAll('newer');
  /** The URL of a page: its cursor, and those of the pages before it (the last TRAIL_KEPT). */
  const pageUrl = (cursor: string | undefined, trail: string[]) => trailUrl('/artifacts', cursor, trail);
  // a build added or deleted elsewhere (the CLI, another tab, another instance); read again
  // once the stream reconnects too, for what changed while it was not (one read as it opens)
  // limit asks for a page (without it and after, the server answers the whole list)
  const list = useLiveList<Page<Artifact> & { maxArtifactBytes?: number }>(`/artifacts?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`, { types: 'artifact.changed' });
  const readOnly = useReadOnly();
  // a build uploaded here is the newest: shown on the first page
  const uploaded = () => (after ? navigate('/artifacts') : list.reload());
  return (
    <>
      <h1>Artifacts</h1>
      {!readOnly && <UploadForm onDone={uploaded} maxBytes={list.data?.maxArtifactBytes} />}
      <section aria-labelledby="list-h">
        <h2 id="list-h">Builds</h2>
        <ErrorNote error={list.error} />
        {!list.data ? (
          !list.error && <Loading what="artifacts" />
        ) : list.data.items.length === 0 ? (
          <p class="muted">{after ? 'No build on this page any more (deleted since): see the newest.' : 'No artifact yet: upload a build above.'}</p>
        ) : (
          <TableScroll>
            <table data-testid="artifacts-table">
              <caption class="sr-only">Artifacts, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Version</th>
                  <th scope="col">Size</th>
                  <th scope="col">SHA-256</th>
                  <th scope="col">Installs on</th>
                  <th scope="col">Signature</th>
                  <th scope="col">Added</th>
                  {/* a viewer has no action: no empty column (QA) */}
                  {!readOnly && (
                    <th scope="col">
                      <span class="sr-only">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody>
                {list.data.items.map((a) => (
                  <tr key={`${a.name}@${a.version}`}>
                    <td>{a.name}</td>
                    <td>{a.version}</td>
                    <td>{bytes(a.size)}</td>
                    <td>
                      <code class="hash">{a.sha256}</code>
                    </td>
                    <td>
                      {a.compatibility?.deviceTypes ? a.compatibility.deviceTypes.join(', ') : <span class="muted">any device type</span>}
                      {a.compatibility?.requires && <span class="small"> over {a.compatibility.requires}</span>}
                    </td>
                    <td>
                      <StatusBadge status={a.signatureStatus ?? (a.signature ? 'signed' : 'unsigned')} />
                      {a.signature && <span class="muted small"> key {a.signature.split(':')[0]}</span>}
                    </td>
                    <td>{dateTime(a.createdAt)}</td>
                    {!readOnly && (
                      <td>
                        <DeleteControl artifact={a} onDone={list.reload} />
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        )}
        {(after || list.data?.next) && (
          <nav class="pager" aria-label="Pages of artifacts">
            <button type="button" disabled={!after} onClick={() => navigate('/artifacts')}>
              Newest
            </button>
            <button type="button" disabled={!after} onClick={() => navigate(pageUrl(newer[newer.length - 1], newer.slice(0, -1)))}>
              Newer builds
            </button>
            <button type="button" disabled={!list.data?.next} onClick={() => navigate(pageUrl(list.data!.next!, after ? [...newer, after] : []))}>
              Older builds
            </button>
          </nav>
        )}
      </section>
    </>
  );
}

/** Delete, confirmed in the page; the server's refusal (a job that is not finished installs it) is shown in the row. */
function DeleteControl({ artifact, onDone }: { artifact: Artifact; onDone: () => void }) {
  const ref = `${artifact.name}@${artifact.version}`;
  return (
    <ConfirmAction
      label="Delete"
      name={`Delete ${ref}`}
      buttonClass="secondary"
      question={`Delete ${ref}? Its bytes leave storage unless another version holds the same ones.`}
      confirm={`Yes, delete ${ref}`}
      keep="Keep it"
      run={async () => {
        await api('DELETE', `/artifacts/${encodeURIComponent(artifact.name)}/${encodeURIComponent(artifact.version)}`);
        onDone();
      }}
    />
  );
}

function UploadForm({ onDone, maxBytes }: { onDone: () => void; maxBytes: number | undefined }) {
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState('');
  const [version, setVersion] = useState('');
  const [deviceTypes, setDeviceTypes] = useState('');
  const [requires, setRequires] = useState('');
  const [progress, setProgress] = useState<number | undefined>();
  const [errors, setErrors] = useState<{ file?: string; name?: string; version?: string; deviceTypes?: string; requires?: string; form?: string }>({});
  const [done, setDone] = useState<string | undefined>();

  const submit = async (e: Event) => {
    e.preventDefault();
    setDone(undefined);
    const local: typeof errors = {};
    if (!file) local.file = 'Choose the build file to upload.';
    // refused before sending: the server stops reading an upload at its limit and cuts the
    // connection, which the browser reports as a failed request, not as the server's reason
    else if (maxBytes !== undefined && file.size > maxBytes) local.file = `${file.name} is ${bytes(file.size)}: the server takes builds of at most ${bytes(maxBytes)} (its --max-artifact-bytes).`;
    if (!name.trim()) local.name = 'Give the artifact a name, e.g. fw.';
    if (!version.trim()) local.version = 'Give a semantic version, e.g. 2.0.0.';
    setErrors(local);
    if (Object.keys(local).length > 0) return;
    setProgress(0);
    try {
      const types = deviceTypes
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '');
      const q = new URLSearchParams({ name: name.trim(), version: version.trim(), ...(types.length ? { deviceTypes: types.join(',') } : {}), ...(requires.trim() ? { requires: requires.trim() } : {}) });
      const a = await upload<Artifact>(`/artifacts?${q}`, file!, setProgress);
      setDone(`Uploaded ${a.name}@${a.version} (${bytes(a.size)}, SHA-256 ${a.sha256.slice(0, 12)}…).`);
      setVersion('');
      onDone();
    } catch (err) {
      const m = (err as Error).message;
      // the server's message names what was wrong; show it beside that field
      if (err instanceof ApiError && /device type/.test(m)) setErrors({ deviceTypes: m });
      else if (err instanceof ApiError && /requires/.test(m)) setErrors({ requires: m });
      else if (err instanceof ApiError && /artifact name/.test(m)) setErrors({ name: m });
      else if (err instanceof ApiError && (/version/.test(m) || err.code === 'CONFLICT')) setErrors({ version: m });
      else setErrors({ form: m });
    } finally {
      setProgress(undefined);
    }
  };

  return (
    <section aria-labelledby="upload-h">
      <h2 id="upload-h">Upload a build</h2>
      <form class="upload" onSubmit={submit} noValidate>
        <Field id="a-file" label="Build file" error={errors.file}>
          <input id="a-file" type="file" onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} aria-invalid={errors.file ? 'true' : undefined} aria-describedby={errors.file ? 'a-file-error' : undefined} />
        </Field>
        <Field id="a-name" label="Name" error={errors.name}>
          <input id="a-name" value={name} placeholder="fw" onInput={(e) => setName(e.currentTarget.value)} aria-invalid={errors.name ? 'true' : undefined} aria-describedby={errors.name ? 'a-name-error' : undefined} />
        </Field>
        <Field id="a-version" label="Version" error={errors.version}>
          <input id="a-version" value={version} placeholder="2.0.0" onInput={(e) => setVersion(e.currentTarget.value)} aria-invalid={errors.version ? 'true' : undefined} aria-describedby={errors.version ? 'a-version-error' : undefined} />
        </Field>
        <Field id="a-types" label="Device types (optional)" error={errors.deviceTypes}>
          <input id="a-types" value={deviceTypes} placeholder="rpi4, rpi5" onInput={(e) => setDeviceTypes(e.currentTarget.value)} aria-invalid={errors.deviceTypes ? 'true' : undefined} aria-describedby={errors.deviceTypes ? 'a-types-error' : undefined} />
        </Field>
        <Field id="a-requires" label="Installs over (optional)" error={errors.requires}>
          <input id="a-requires" value={requires} placeholder=">=1.5.0" onInput={(e) => setRequires(e.currentTarget.value)} aria-invalid={errors.requires ? 'true' : undefined} aria-describedby={errors.requires ? 'a-requires-error' : undefined} />
        </Field>
        <div class="field actions">
          <button type="submit" disabled={progress !== undefined}>
            Upload
          </button>
        </div>
      </form>
      {progress !== undefined && <progress value={progress} max={1} aria-label="Upload progress" />}
      {errors.form && (
        <p class="error" role="alert">
          {errors.form}
        </p>
      )}
      {done && (
        <p class="ok" role="status">
          {done}
        </p>
      )}
    </section>
  );
}
