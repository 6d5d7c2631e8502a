/**
 * Child process for the "crash mid-install" test: installs with a health check that records
 * its process group and then hangs, so the parent can SIGKILL this process at that point.
 * argv: <installDir> <file> <version> <sha256> <size> <markerFile>
 */
import { SlotInstaller } from '../../../src/agent/slot-installer.ts';

const [dir, file, version, sha256, size, marker] = process.argv.slice(2) as [string, string, string, string, string, string];
const installer = new SlotInstaller({ dir, healthCheck: `echo $$ > '${marker}'; sleep 60`, healthCheckTimeoutMs: 120_000 });
await installer.install(file, { name: 'fw', version, sha256, size: Number(size), jobId: 'job-crash' }, {});
