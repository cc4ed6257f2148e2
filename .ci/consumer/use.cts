// The CommonJS side under nodenext: `import x = require()` gets the require types.
import warden = require('warden');

export const spawn: typeof warden.Sandbox.spawn = warden.Sandbox.spawn;
export type Host = warden.PluginHost;
