/** Hooks: points the host declares, handlers the host and its plugins register, and their invocation. */
export { HookRegistry, INVOKE_MODES, DEFAULT_HOOK_TIMEOUT, MAX_HOOK_TIMEOUT, HOOK_NAME } from './registry';
export { normaliseError } from './invoke';
export type {
  InvokeMode, HookDeclaration, HandlerContext, HookHandler, HandlerOptions, HandlerOutcome, HookResult, InvokeOptions,
  HandlerInfo, OwnerHandler,
} from './types';
