// Type-checked only (tsc --noEmit, strict), under module nodenext and under bundler resolution.
import { Sandbox, PluginHost, TrustStore, SandboxSetupError, type ExitResult, type SpawnOptions } from 'warden';

const options: SpawnOptions = { command: ['/bin/true'], stdio: ['ignore', 'ignore', 'inherit'] };
export async function run(): Promise<number | null> {
  try {
    const sb = Sandbox.spawn(options);
    const result: ExitResult = await sb.exited;
    return result.code;
  } catch (err) {
    if (err instanceof SandboxSetupError) return -1;
    throw err;
  }
}

export function makeHost(store: TrustStore): PluginHost {
  return new PluginHost({ pluginDirs: ['/srv/plugins'], trust: { store, file: '/srv/trust.json' }, hostApiVersion: '1.0.0' });
}
