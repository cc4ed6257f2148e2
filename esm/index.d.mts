// Types of the ES module entry (esm/index.mjs): the same names as the CommonJS build.
export * from '../dist/lib/index.js';
import * as warden from '../dist/lib/index.js';
export default warden;
