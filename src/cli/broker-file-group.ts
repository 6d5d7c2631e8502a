/**
 * Who may read the broker's password file. `updraft broker mosquitto-config` (and its
 * `--watch`) writes `passwd` mode 0600, owned by the user it runs as: password hashes are no
 * one else's. Mosquitto started as root drops to its own user (`user mosquitto`, the default)
 * and reads the password file as that user, at start and at each reload (SIGHUP): a watch run
 * as root (a systemd unit's default) wrote a file Mosquitto could not read, and the reload
 * after the first device registered left the broker on its old file, or one it refused
 * (the workaround: `--reload-command "chown mosquitto: passwd && kill -HUP <pid>"`).
 *
 * With a group (`--group mosquitto`: the group of the user Mosquitto runs as), the file is
 * written 0640 with that group, before it is renamed into place: Mosquitto never sees a copy
 * it cannot read, and nobody else reads it. Without one, a process running as root is told at
 * start (`rootWithoutGroupWarning`).
 */
import { execFile } from 'node:child_process';
import { chmod, chown, readFile } from 'node:fs/promises';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';

/** A group, by name and id. */
export interface FileGroup {
  name: string;
  gid: number;
}

/**
 * The group `name` (a name, or a number) names: from /etc/group, else `getent group` (groups
 * of a directory service). BAD_REQUEST (one line) when there is none, or when this process
 * could not give a file to it (not root, and not a member: chown would be refused).
 */
export async function resolveFileGroup(flag: string, name: string, groupFile = '/etc/group'): Promise<FileGroup> {
  const wanted = name.trim();
  if (wanted === '') throw new UpdraftError('BAD_REQUEST', `${flag} must name a group (the one Mosquitto runs as, e.g. mosquitto)`);
  const found = (await fromGroupFile(wanted, groupFile)) ?? (await fromGetent(wanted)) ?? (/^\d+$/.test(wanted) ? { name: wanted, gid: Number(wanted) } : undefined);
  if (found === undefined) throw new UpdraftError('BAD_REQUEST', `${flag} ${wanted}: no such group (not in ${groupFile}, nor known to getent); give the group Mosquitto runs as (e.g. mosquitto) or its number`);
  const uid = process.getuid?.();
  if (uid !== undefined && uid !== 0 && process.getgid?.() !== found.gid && !(process.getgroups?.() ?? []).includes(found.gid)) {
    throw new UpdraftError('BAD_REQUEST', `${flag} ${wanted}: this user (uid ${uid}) is not in group ${found.name} (${found.gid}), so it cannot give the file to it: run as root, or as a user in that group`);
  }
  return found;
}

/** The line a process running as root, given no group, says at start: Mosquitto dropped to its own user cannot read what it writes. Undefined otherwise. */
export function rootWithoutGroupWarning(file: string, group: FileGroup | undefined, uid: number | undefined = process.getuid?.()): string | undefined {
  if (group !== undefined || uid !== 0) return undefined;
  return `running as root without --group: ${file} is written mode 0600 owned by root, which Mosquitto, dropped to its own user (user mosquitto, its default), cannot read at start or reload; give --group mosquitto (the group it runs as) to write it 0640 with that group`;
}

/**
 * Atomically replaces `file` with `text` (a temporary file beside it, fsynced, renamed over it,
 * the directory fsynced: writeFileAtomic's steps): mode 0600, or with `group` 0640 and that
 * group, set before the rename, so that no reader sees the file without them.
 */
export async function writeBrokerSecretFile(file: string, text: string, group: FileGroup | undefined): Promise<void> {
  const mode = group === undefined ? 0o600 : 0o640;
  await writeFileAtomic(file, text, mode, async (handle) => {
    // the mode again: open's is narrowed by the umask (a umask of 077 would drop the group's read)
    await handle.chmod(mode);
    if (group === undefined) return;
    await handle.chown(-1, group.gid).catch((err: NodeJS.ErrnoException) => {
      throw new UpdraftError('CONFIG', `cannot give ${file} to group ${group.name} (${group.gid}): ${err.message}; run as root, or as a user in that group`, { cause: err });
    });
  });
}

/**
 * Gives a file already written 0600 (the one-shot `mosquitto-config`'s, through its output
 * directory, which removes what it made when a later file fails) to `group`: 0640 with that
 * group. Nothing without a group.
 */
export async function shareWithGroup(file: string, group: FileGroup | undefined): Promise<void> {
  if (group === undefined) return;
  await chown(file, -1, group.gid).catch((err: NodeJS.ErrnoException) => {
    throw new UpdraftError('CONFIG', `cannot give ${file} to group ${group.name} (${group.gid}): ${err.message}; run as root, or as a user in that group`, { cause: err });
  });
  await chmod(file, 0o640);
}

async function fromGroupFile(wanted: string, groupFile: string): Promise<FileGroup | undefined> {
  const text = await readFile(groupFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === undefined || gid === undefined || !/^\d+$/.test(gid)) continue;
    if (name === wanted || gid === wanted) return { name, gid: Number(gid) };
  }
  return undefined;
}

function fromGetent(wanted: string): Promise<FileGroup | undefined> {
  return new Promise((resolve) => {
    execFile('getent', ['group', wanted], { timeout: 5_000 }, (err, stdout) => {
      const [name, , gid] = String(stdout).split('\n')[0]!.split(':');
      resolve(err || name === undefined || gid === undefined || !/^\d+$/.test(gid) ? undefined : { name, gid: Number(gid) });
    });
  });
}
