/** The public API of warden. Everything a host uses is exported from here. */
export { WardenError, InvalidOptionError } from './errors';
export { Sandbox } from './sandbox/sandbox';
export { SandboxSetupError } from './sandbox/errors';
export type {
  SpawnOptions, ExitResult, Violation, BindMount, TmpfsMount, StdioOption, NamespaceName, RlimitName, RlimitValue,
} from './sandbox/types';
