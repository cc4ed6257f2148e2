/**
 * Every error warden throws is a WardenError with a stable `code`. Messages say what to do.
 */
export class WardenError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad input: names the field and what to do. Nothing was started or written. */
export class InvalidOptionError extends WardenError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('ERR_INVALID_OPTION', `${field}: ${message}`);
    this.field = field;
  }
}
