import type { InvalidReason, ServerErrorCode } from "./types";

/**
 * Every error code a {@link TesseraError} may carry: the server's own
 * (`invalid_session`, `version_conflict`, …) and three the client makes:
 *
 * - `server_unreachable` (status 503): no answer from tesserad (connection
 *   refused or reset, timeout). Treat it like `store_unavailable`: fail closed.
 * - `unexpected_response` (status 502): an answer that is not tesserad's
 *   (a proxy's error page, say).
 * - `not_authenticated` (status 401): a middleware operation that needs a
 *   signed-in session (`revokeOthers`) was called without one.
 */
export type ErrorCode =
  | ServerErrorCode
  | "server_unreachable"
  | "unexpected_response"
  | "not_authenticated";

/** The one error class of the client and the middleware. */
export class TesseraError extends Error {
  /** The stable error code. */
  readonly error: ErrorCode;
  /** The HTTP status (tesserad's, or the one the client chose, see {@link ErrorCode}). */
  readonly status: number;
  /** Why the session is invalid (only with `invalid_session`). */
  readonly reason: InvalidReason | undefined;
  /** The version now stored (only with `version_conflict`). */
  readonly currentVersion: number | undefined;

  constructor(
    error: ErrorCode,
    message: string,
    status: number,
    extra: { reason?: InvalidReason; currentVersion?: number; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "TesseraError";
    this.error = error;
    this.status = status;
    this.reason = extra.reason;
    this.currentVersion = extra.currentVersion;
  }

  /** Alias of {@link status}, read by Express's default error handler. */
  get statusCode(): number {
    return this.status;
  }
}

/** Whether `value` is a {@link TesseraError}, optionally with this code. */
export function isTesseraError(value: unknown, code?: ErrorCode): value is TesseraError {
  return value instanceof TesseraError && (code === undefined || value.error === code);
}
