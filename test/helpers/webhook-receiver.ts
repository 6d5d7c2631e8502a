/**
 * A real HTTP endpoint for webhook tests: it keeps every delivery posted to it, in order,
 * and answers 204.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WebhookDelivery } from '../../src/events/webhook-notifier.ts';

/** A running receiver. */
export interface WebhookReceiver {
  /** The URL to give the server (`--webhook-url`). */
  readonly url: string;
  /** Every delivery received, parsed, in the order received (tests may empty it). */
  readonly got: WebhookDelivery[];
  close(): Promise<void>;
}

/** Starts a receiver on a free port of 127.0.0.1; its deliveries go into `got` (a new array by default). */
export async function startWebhookReceiver(got: WebhookDelivery[] = []): Promise<WebhookReceiver> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push(JSON.parse(body) as WebhookDelivery);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    got,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
