/**
 * libsodium-wrappers is WebAssembly that initialises asynchronously and adds its functions to the
 * module object once ready. `import = require` keeps the live object; `import * as` would copy it
 * before initialisation and miss them. Every user awaits getSodium() first.
 */
import sodium = require('libsodium-wrappers');

export type Sodium = typeof sodium;

export async function getSodium(): Promise<Sodium> {
  await sodium.ready;
  return sodium;
}
