/**
 * docs/configuration.md holds the settings table the schema prints (`updraft config --docs`),
 * so the documentation says what the settings are and do, and promises none that is not
 * there (it once said download URLs were bound "optionally" to the client's IP, which no
 * setting did: docs/security.md, "Not covered").
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { it } from 'node:test';
import { settingsMarkdown } from '../../src/config/load-config.ts';

it('docs/configuration.md lists every setting as the schema documents it', async () => {
  const doc = await readFile(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  const table = doc.slice(doc.indexOf('| setting | flag |'), doc.indexOf('\n\n', doc.indexOf('| setting | flag |')));
  assert.equal(table, settingsMarkdown(), 'replace the table in docs/configuration.md with the output of: updraft config --docs');
});
