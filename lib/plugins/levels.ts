/**
 * A trust level's ceiling applied to a trust entry: every permission the entry grants must be
 * covered by a permission of its level's ceiling (lib/trust/levels.ts), else the plugin is refused
 * at load (and `warden trust add` refuses to list it). The grants, not only the manifest's requests,
 * are checked: a list that grants a 'restricted' plugin sys:exec contradicts itself, and the
 * stricter reading wins.
 */
import { ANY_PERMISSION, type LevelPolicy, type TrustLevel } from '../trust/levels';
import { isBusGrant } from '../bus';
import { PluginError } from './errors';
import { covers, parsePermission, type Permission } from './permissions';

/** An entry is granted a permission above its trust level's ceiling. */
export class LevelCeilingError extends PluginError {
  readonly level: TrustLevel;
  readonly permission: string;
  constructor(plugin: string, level: TrustLevel, permission: string, ceiling: readonly string[]) {
    const allowed = ceiling.length === 0 ? 'no permissions at all' : ceiling.join(', ');
    super('ERR_PLUGIN_LEVEL_CEILING', plugin,
      `${plugin} is granted ${permission}, above the ceiling of trust level '${level}' (which allows ${allowed}); ` +
      'give the entry a level whose ceiling covers it (warden trust add --trust LEVEL --replace), or remove the grant');
    this.level = level;
    this.permission = permission;
  }
}

/** The first granted permission the level's ceiling does not cover, if any. */
export function aboveCeiling(granted: readonly string[], ceiling: readonly string[]): string | undefined {
  if (ceiling.includes(ANY_PERMISSION)) return undefined;
  const limits: Permission[] = [];
  for (const c of ceiling) {
    try {
      limits.push(parsePermission(c));
    } catch {
      // A ceiling entry this host does not understand covers nothing (fail closed).
    }
  }
  for (const g of granted) {
    let p: Permission;
    try {
      p = parsePermission(g);
    } catch {
      return g;
    }
    if (!limits.some((c) => covers(c, p))) return g;
  }
  return undefined;
}

/** Throws LevelCeilingError when the entry's grants go above its level's ceiling. */
export function checkLevelCeiling(plugin: string, level: TrustLevel, policy: LevelPolicy, granted: readonly string[]): void {
  // Bus grants are not host capabilities (they name other plugins' topics, services and data): a
  // level's ceiling does not cover them, each is granted by name.
  const over = aboveCeiling(granted.filter((g) => !isBusGrant(g)), policy.permissions);
  if (over !== undefined) throw new LevelCeilingError(plugin, level, over, policy.permissions);
}
