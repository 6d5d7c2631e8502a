/**
 * Who issues the download URL a device receives in its update command (docs/design.md §3, §5).
 * The default signs a URL to Updraft's own download endpoint with the HMAC key ring
 * (`UrlSigner`: bound to device, artifact and expiry, and with `downloads.ipBinding mqtt` to the device's MQTT address, docs/security.md). With S3 storage the
 * device downloads straight from the bucket with an S3 pre-signed URL, so artifact traffic
 * never crosses the Updraft instances.
 */
import type { S3BlobStore } from './s3-blob-store.ts';
import type { UrlGrant, UrlSigner } from './url-signer.ts';

/** Issues a fresh, short-lived download URL for one device and one artifact. */
export interface DownloadUrlIssuer {
  issue(grant: UrlGrant): Promise<string>;
}

/** URLs to Updraft's `/v1/download/...`, HMAC-signed (the default). */
export class HmacUrlIssuer implements DownloadUrlIssuer {
  private readonly signer: UrlSigner;

  constructor(deps: { signer: UrlSigner }) {
    this.signer = deps.signer;
  }

  async issue(grant: UrlGrant): Promise<string> {
    return this.signer.sign(grant);
  }
}

/**
 * S3 pre-signed GET URLs. S3 checks only the signature and the expiry: the URL names the
 * device (in its signed Content-Disposition) but S3 cannot refuse another device or IP
 * holding it. Where that binding matters, keep downloads on the HMAC issuer (Updraft serves
 * the bytes from S3 itself then).
 */
export class S3UrlIssuer implements DownloadUrlIssuer {
  private readonly blobs: S3BlobStore;

  constructor(deps: { blobs: S3BlobStore }) {
    this.blobs = deps.blobs;
  }

  async issue(grant: UrlGrant): Promise<string> {
    const ttl = Math.max(1, grant.expiresAt - Math.floor(Date.now() / 1000));
    return this.blobs.presign(grant.sha256, ttl, `${grant.name}-${grant.version}-${grant.deviceId}.bin`);
  }
}
