import assert from "node:assert/strict";

import { TesseraError, type ErrorCode } from "../../src/index";

/** Asserts that `promise` rejects with a TesseraError of this code (and these fields). */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: ErrorCode,
  expected: { status?: number; reason?: string; currentVersion?: number } = {},
): Promise<TesseraError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof TesseraError, `expected a TesseraError ${code}, got ${String(caught)}`);
  assert.equal(caught.error, code, caught.message);
  if (expected.status !== undefined) assert.equal(caught.status, expected.status);
  if (expected.reason !== undefined) assert.equal(caught.reason, expected.reason);
  if (expected.currentVersion !== undefined) assert.equal(caught.currentVersion, expected.currentVersion);
  return caught;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
