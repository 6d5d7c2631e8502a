/**
 * The devices' state as `updraft sim --devices-file` reads it back: what each device kept
 * from an earlier run (`SimDeviceState`), checked as the agent checks its own saved state.
 */
import { finishedJobsOf, trustStateOf, type TrustState } from '../agent/agent-state.ts';
import type { SimDeviceState } from './sim-options.ts';

type RotatedRoot = NonNullable<TrustState['rotatedRoot']>;

/**
 * A reader of the `state` entries of one devices file. A state without the software its
 * device runs is dropped (that device starts afresh); a malformed finished job or trust field
 * is dropped alone, as the agent drops it from its own saved state (`trustStateOf`).
 *
 * What the devices share is read into one value each: every device that followed a root
 * rotation rotated to the same root, and they accepted the certificates of a few signing keys,
 * so the reader keeps one object per distinct rotated root and one string per key id, not one
 * per device (a cycling fleet holds up to 100,000 states for its whole run). The agent never
 * changes a saved object (it replaces it: `MemoryAgentStateStore`), so sharing them is safe.
 */
export function deviceStateReader(): (raw: unknown) => SimDeviceState | undefined {
  const roots = new Map<string, RotatedRoot>();
  const ids = new Map<string, string>();
  const keyId = (id: string): string => {
    const known = ids.get(id);
    if (known !== undefined) return known;
    ids.set(id, id);
    return id;
  };
  const rotatedRoot = (root: RotatedRoot): RotatedRoot => {
    const key = `${root.keyId} ${root.provisionedKeyId} ${root.publicKey}`;
    const known = roots.get(key);
    if (known) return known;
    const one = { keyId: keyId(root.keyId), publicKey: root.publicKey, provisionedKeyId: keyId(root.provisionedKeyId) };
    roots.set(key, one);
    return one;
  };
  return (raw) => {
    const st = raw as (Partial<SimDeviceState> & Record<string, unknown>) | undefined;
    if (typeof st?.software?.version !== 'string' || !Array.isArray(st.finished)) return undefined;
    const out: SimDeviceState = { software: st.software, finished: finishedJobsOf(st.finished) };
    // only what the device has: most devices of a fleet (trusting the signing key, or never
    // given a certificate) keep none of the three
    const trust = trustStateOf(st);
    if (trust.keySerial !== undefined) out.keySerial = trust.keySerial;
    if (trust.keySerialKeyId !== undefined) out.keySerialKeyId = keyId(trust.keySerialKeyId);
    if (trust.rotatedRoot) out.rotatedRoot = rotatedRoot(trust.rotatedRoot);
    return out;
  };
}
