import type { ApiError, ErrorCode, RunResult } from "./types";

/**
 * Every error this package throws for a request bunker refused or could not carry out. `code`
 * is one of the API's stable codes (docs/api.md), spelled as the API spells it: branch on it,
 * not on the message.
 */
export class BunkerError extends Error {
  readonly code: ErrorCode;
  /** For `setup_failed` / `unenforceable`: the step that failed. */
  readonly step?: string;
  /** For `policy_invalid`: what kind of mistake, and where. */
  readonly policy?: ApiError["policy"];
  /** The run's result, when the error comes with one (e.g. a run that could not start). */
  readonly result?: RunResult;

  constructor(
    code: ErrorCode,
    message: string,
    extra: { step?: string; policy?: ApiError["policy"]; result?: RunResult; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "BunkerError";
    this.code = code;
    if (extra.step !== undefined) this.step = extra.step;
    if (extra.policy !== undefined) this.policy = extra.policy;
    if (extra.result !== undefined) this.result = extra.result;
  }

  /** The error an `ApiError` reply stands for. */
  static fromApi(error: ApiError): BunkerError {
    return new BunkerError(error.code, error.message, { step: error.step, policy: error.policy });
  }
}

/** A `request_invalid` error for an option this package does not know or cannot take. */
export function badOption(where: string, message: string): BunkerError {
  return new BunkerError("request_invalid", `${where}: ${message}`);
}

/** Refuses option keys outside `known`, naming the first unknown one and the known ones. */
export function checkKeys(where: string, options: object | undefined, known: readonly string[]): void {
  if (options === undefined || options === null) return;
  if (typeof options !== "object") throw badOption(where, `options must be an object, got ${typeof options}`);
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw badOption(where, `unknown option "${key}" (known: ${known.join(", ")})`);
    }
  }
}
