/** The public API of warden. Everything a host uses is exported from here. */
export { WardenError, InvalidOptionError } from './errors';
export * from './trust';
