/**
 * The dashboard's client of the operator API: every call carries the token as a bearer
 * header; errors become ApiError with the server's code and message (which name the field).
 * A 401 signs the tab out, so an expired or rotated token leads back to the login page
 * (unless this tab replaced the token meanwhile).
 */
import { getToken, signOutRefused } from './auth.ts';
import type { Page } from './types.ts';

/** A refusal or failure of an API call. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    return new ApiError(res.status, body.error?.code ?? 'HTTP', body.error?.message ?? `HTTP ${res.status}`);
  } catch {
    return new ApiError(res.status, 'HTTP', `the server answered HTTP ${res.status}`);
  }
}

/** Calls `/api/v1{path}` with JSON in and out. */
export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const token = getToken();
  const headers: Record<string, string> = { authorization: `Bearer ${token ?? ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), ...(signal ? { signal } : {}) });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError(0, 'NETWORK', 'the server cannot be reached; check that it runs');
  }
  if (!res.ok) {
    const e = await errorOf(res);
    // only if the refused token is still this tab's: a call sent just before the token was
    // replaced from this tab comes back 401, and must not sign out the new one
    if (e.status === 401 && getToken() === token) signOutRefused(e.message);
    throw e;
  }
  return (await res.json()) as T;
}

/** GET shorthand. */
export function get<T>(path: string, signal?: AbortSignal): Promise<T> {
  return api<T>('GET', path, undefined, signal);
}

/**
 * GETs every page of a list as one: `path` (with its query: `?limit=1000` saves requests), then
 * each `next` as `after`, until a page has none. For what shows a whole list at once (New
 * rollout's build picker); the other fields of the answer are the first page's.
 */
export async function getAllPages<P extends Page<unknown>>(path: string, signal?: AbortSignal): Promise<P> {
  const first = await get<P>(path, signal);
  const items = [...first.items];
  let next = first.next;
  while (next !== undefined) {
    const page = await get<P>(`${path}${path.includes('?') ? '&' : '?'}after=${encodeURIComponent(next)}`, signal);
    items.push(...page.items);
    next = page.next;
  }
  const { next: _first, ...rest } = first;
  return { ...rest, items } as P;
}

/**
 * Uploads a file as raw bytes with progress (fetch cannot report upload progress, XHR can).
 * Resolves with the created record; rejects with ApiError.
 */
export function upload<T>(path: string, file: Blob, onProgress: (fraction: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/v1${path}`);
    const token = getToken();
    xhr.setRequestHeader('authorization', `Bearer ${token ?? ''}`);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the upload failed: the server cannot be reached'));
    xhr.onload = () => {
      let body: { error?: { code?: string; message?: string } } = {};
      try {
        body = JSON.parse(xhr.responseText) as typeof body;
      } catch {
        /* not JSON: reported below by status */
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(body as T);
      const e = new ApiError(xhr.status, body.error?.code ?? 'HTTP', body.error?.message ?? `HTTP ${xhr.status}`);
      if (xhr.status === 401 && getToken() === token) signOutRefused(e.message);
      reject(e);
    };
    xhr.send(file);
  });
}
