export { TesseraClient, OPERATIONS, BROWSER_OPERATIONS, type TesseraClientOptions, type ForwardAuthResult } from "./client";
export { TesseraError, isTesseraError, type ErrorCode } from "./errors";
export { tesseraSession, SessionHandle, type TesseraSessionOptions, type SessionUpdate } from "./express";
export { CSRF_DATA_KEY, type CsrfErrorCode } from "./csrf";
export { DEFAULT_COOKIE_NAME, type SameSite } from "./cookies";
export type * from "./types";
