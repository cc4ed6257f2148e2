/**
 * What the host does when the file watch (watch.ts) reports a change: a plugin directory that
 * appeared is discovered (and loaded if eager), one that changed is reloaded; a changed trust list
 * is read again, and what runs is reloaded if its entry changed or unloaded if it is no longer
 * listed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import type { VerifiedTrustList } from '../trust/verify';
import type { HostCore } from './host-core';
import { readManifest } from './manifest';
import type { PluginRecord } from './record';

export async function onDirChanged(core: HostCore, dirName: string): Promise<void> {
  if (core.isClosed()) return;
  const known = [...core.records.values()].find((r) => path.basename(r.dir) === dirName);
  if (known === undefined) {
    // A new plugin directory appeared: discover it, load it if eager.
    await core.scan();
    if (core.isClosed()) return;
    const fresh = [...core.records.values()].find((r) => path.basename(r.dir) === dirName);
    if (fresh !== undefined && fresh.status === 'idle' && core.settings.loading !== 'lazy') core.ensureLoaded(fresh, []).catch(() => undefined);
    return;
  }
  if (!fs.existsSync(known.dir)) return; // mid-rename; the next event brings it back
  if (known.status === 'idle') {
    // Not started yet (lazy): only the hooks it says it handles matter until then.
    try {
      known.manifest = readManifest(known.dir);
    } catch {
      // reported when it is loaded
    }
    return;
  }
  if (known.status === 'active' || known.status === 'failed' || known.status === 'unloaded') {
    core.reload(known.name).catch(() => undefined);
  }
}

export async function onTrustChanged(core: HostCore): Promise<void> {
  if (core.isClosed()) return;
  let list: VerifiedTrustList;
  try {
    list = await core.refreshTrust();
  } catch {
    return; // refused (and audited): the previous list stays in force
  }
  for (const r of core.records.values()) {
    const inst = r.instance;
    if (inst !== undefined) {
      const e = list.entries.find((x) => x.name === inst.name && x.version === inst.version && x.digest === inst.info.trust.digest);
      if (e === undefined) {
        // What runs is no longer trusted: it goes now, whatever the directory holds.
        unloadRevoked(core, r).catch(() => undefined);
      } else if (JSON.stringify(e) !== JSON.stringify(inst.info.trust) || r.manifest?.version !== inst.version) {
        reloadUnderNewEntry(core, r).catch(() => undefined);
      }
    } else if (r.status === 'failed' && r.reason?.kind === 'refused') {
      core.ensureLoaded(r, []).catch(() => undefined);
    }
  }
}

/**
 * The list changed the running version's entry (grants, limits, level), or the directory holds a new
 * version: reload. When the reload fails, what runs keeps serving only if the list still holds the
 * entry it runs under unchanged (a new version that does not load is no reason to stop the old one).
 * An instance whose own entry changed runs with grants or limits the list no longer gives: it does
 * not outlive them (fail closed), it is unloaded.
 */
async function reloadUnderNewEntry(core: HostCore, r: PluginRecord): Promise<void> {
  const inst = r.instance;
  try {
    await core.reload(r.name);
    return;
  } catch {
    // not loadable under the list as it is now: judged below
  }
  if (inst === undefined || r.instance !== inst) return; // replaced or gone meanwhile
  const now = core.trustList()?.entries.find((x) => x.name === inst.name && x.version === inst.version && x.digest === inst.info.trust.digest);
  if (now !== undefined && JSON.stringify(now) === JSON.stringify(inst.info.trust)) return;
  await core.enqueue(r, () => core.doUnload(r, { kind: 'revoked', message: `${inst.name}@${inst.version}: its trust list entry changed and it cannot load under the new one` }));
  core.log('warning', 'unload', r, 'its trust list entry changed and the reload under it failed: unloaded, not left running with what it was given before');
}

async function unloadRevoked(core: HostCore, r: PluginRecord): Promise<void> {
  // Try the directory's current version first (an update whose list entry replaced the old one).
  try {
    await core.reload(r.name);
    return;
  } catch {
    // not loadable: unload below
  }
  const inst = r.instance;
  if (inst === undefined) return;
  const listed = core.trustList()?.entries.some((x) => x.name === inst.name && x.version === inst.version && x.digest === inst.info.trust.digest);
  if (listed) return;
  await core.enqueue(r, () => core.doUnload(r, { kind: 'revoked', message: `${inst.name}@${inst.version} is no longer in the trust list` }));
  core.log('warning', 'unload', r, 'revoked by the trust list');
}
