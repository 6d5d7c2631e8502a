#!/usr/bin/env node
// Entry point of the `updraft` command: runs the TypeScript sources through tsx, so a clean
// checkout needs no build step (`npm ci` and go).
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
