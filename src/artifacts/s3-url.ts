/**
 * The \`blob\` setting's S3 URL, read without the AWS SDK: the configuration checks it at
 * start-up with every other setting (a usage error, exit 2), before any client is made.
 */
import type { S3BlobStoreOptions } from './s3-blob-store.ts';
import { UpdraftError } from '../errors.ts';

/**
 * `s3://bucket[/prefix]?endpoint=http://minio:9000&region=eu-west-1&pathStyle=true&create=true`.
 * Credentials are not part of the URL: the AWS SDK's chain (AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY, a profile, an instance role) provides them.
 */
export function parseS3Url(url: string): S3BlobStoreOptions {
  const u = new URL(url);
  if (u.protocol !== 's3:' || !u.hostname) throw new UpdraftError('CONFIG', `blob must look like s3://bucket[/prefix]?endpoint=..., got ${url}`);
  const q = u.searchParams;
  const known = new Set(['endpoint', 'region', 'pathStyle', 'create']);
  const unknown = [...q.keys()].filter((k) => !known.has(k));
  if (unknown.length) throw new UpdraftError('CONFIG', `blob URL has unknown parameters ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
  const prefix = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  const endpoint = q.get('endpoint') ?? undefined;
  const flag = (name: string) => {
    const v = q.get(name);
    if (v === null) return undefined;
    if (v !== 'true' && v !== 'false') throw new UpdraftError('CONFIG', `blob URL parameter ${name} must be true or false, got ${v}`);
    return v === 'true';
  };
  const pathStyle = flag('pathStyle');
  const create = flag('create');
  return {
    bucket: u.hostname,
    prefix: prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix,
    ...(endpoint ? { endpoint } : {}),
    ...(q.get('region') ? { region: q.get('region')! } : {}),
    ...(pathStyle !== undefined ? { forcePathStyle: pathStyle } : {}),
    ...(create !== undefined ? { createBucket: create } : {}),
  };
}
