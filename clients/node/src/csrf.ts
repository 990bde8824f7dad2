/**
 * CSRF protection as in tessera-axum (crates/tessera-axum/src/csrf.rs):
 * a 32-byte secret per session, kept in the session data; tokens handed to
 * pages are `base64url(mask ‖ mask ⊕ secret)` with a fresh random mask each
 * time (no two responses carry the same bytes: BREACH learns nothing), and
 * unsafe requests must also not come from another site according to
 * `Sec-Fetch-Site`, or failing that `Origin`.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";

const SECRET_LEN = 32;

/** The session data key of the secret (the same as the Rust layer's). */
export const CSRF_DATA_KEY = "__tessera_csrf";

/** Why an unsafe request was refused (always 403; sent as `Tessera-Error`). */
export type CsrfErrorCode =
  | "csrf_cross_site"
  | "csrf_missing_token"
  | "csrf_no_session"
  | "csrf_invalid_token";

/** Whether requests with this method change state and need a token. */
export function isUnsafe(method: string): boolean {
  return !["GET", "HEAD", "OPTIONS", "TRACE"].includes(method.toUpperCase());
}

/** A fresh random secret, as stored in the session data. */
export function newSecret(): string {
  return randomBytes(SECRET_LEN).toString("base64url");
}

function decodeSecret(secret: string): Buffer | undefined {
  const bytes = decodeBase64Url(secret);
  return bytes?.length === SECRET_LEN ? bytes : undefined;
}

/** Strict base64url without padding (what the Rust layer accepts). */
function decodeBase64Url(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64url");
  // Non-canonical trailing bits are refused, like the Rust decoder does.
  return bytes.toString("base64url") === text ? bytes : undefined;
}

/** A masked token for `secret`: different on every call. */
export function mask(secret: string): string {
  const key = decodeSecret(secret) ?? Buffer.alloc(SECRET_LEN);
  const pad = randomBytes(SECRET_LEN);
  const token = Buffer.alloc(2 * SECRET_LEN);
  pad.copy(token, 0);
  for (let i = 0; i < SECRET_LEN; i++) token[SECRET_LEN + i] = key[i]! ^ pad[i]!;
  return token.toString("base64url");
}

/** Whether a presented masked token unmasks to `secret` (constant time). */
export function verify(secret: string, presented: string): boolean {
  const key = decodeSecret(secret);
  if (!key || presented.length > 128) return false;
  const token = decodeBase64Url(presented.trim());
  if (!token || token.length !== 2 * SECRET_LEN) return false;
  const unmasked = Buffer.alloc(SECRET_LEN);
  for (let i = 0; i < SECRET_LEN; i++) unmasked[i] = token[i]! ^ token[SECRET_LEN + i]!;
  return timingSafeEqual(unmasked, key);
}

/**
 * The `Sec-Fetch-Site` / `Origin` check. Returns the evidence of a
 * cross-site request, or `undefined` when it may proceed. `trusted` are
 * extra origins (`scheme://host[:port]`) allowed to post.
 */
export function crossSiteEvidence(
  headers: Record<string, string | string[] | undefined>,
  trusted: readonly string[],
): string | undefined {
  const first = (name: string): string | undefined => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const origin = first("origin")?.trim();
  const trustedOrigin = origin !== undefined && trusted.includes(origin);
  const site = first("sec-fetch-site");
  if (site !== undefined) {
    if (site === "same-origin" || site === "none" || trustedOrigin) return undefined;
    return `Sec-Fetch-Site: ${site}`;
  }
  // Neither header: an older browser or a non-browser client; the token alone decides.
  if (origin === undefined) return undefined;
  const host = first("host");
  const separator = origin.indexOf("://");
  const authority = separator >= 0 ? origin.slice(separator + 3) : undefined;
  if ((authority !== undefined && authority === host) || trustedOrigin) return undefined;
  return `Origin: ${origin}`;
}

/** The message of each refusal (the Rust layer's wording). */
export function csrfMessage(code: CsrfErrorCode, detail: { header: string; field: string; evidence?: string }): string {
  switch (code) {
    case "csrf_cross_site":
      return `cross-site request refused: ${detail.evidence ?? ""}`;
    case "csrf_missing_token":
      return `the request carries no CSRF token (send it in the ${detail.header} header or the ${detail.field} form field)`;
    case "csrf_no_session":
      return "the request has no session to check its CSRF token against; load the form again";
    case "csrf_invalid_token":
      return "the CSRF token does not match this session; load the form again";
  }
}
