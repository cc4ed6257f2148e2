/** Resource limits through cgroups (unified, hybrid and legacy hosts). */
export { SandboxCgroup, CGROUP_PREFIX, listSandboxCgroups, endingViolation, memoryRoom } from './sandbox-cgroup';
export type { LimitViolation, LimitViolationKind, LimitStats, CreateOptions } from './sandbox-cgroup';
export { deadHostCgroups } from './cleanup';
export type { LeftoverCgroup } from './cleanup';
export { resolveLimits, needsCgroup } from './options';
export type { LimitsOptions, ResolvedLimits, IoLimitOptions, IoLimit } from './options';
export type { WeakerLimit, StatField, StatFields } from './backend';
export type { RlimitSpec } from './rlimits';
export { detectLayout, hostLayout } from './layout';
export type { CgroupLayout, CgroupMode, Hierarchy } from './layout';
export { discoverOwnCgroups } from './discover';
export type { OwnCgroups } from './discover';
export { parseSize, parseDuration, parseCpu, parseCount, formatSize } from './units';
export { cgroupReport, formatCgroupReport } from './doctor';
export type { CgroupReport } from './doctor';
