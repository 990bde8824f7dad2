/**
 * The session cookie, read and written as tessera-axum does
 * (crates/tessera-axum/src/cookies.rs): `Secure; HttpOnly; SameSite=Lax;
 * Path=/`, no `Domain`, no `Max-Age` (a browser-session cookie: the server
 * enforces the timeouts). A request whose session cookie is duplicated,
 * oversized or not token text carries no credential and is served as
 * anonymous.
 */

/** Largest cookie (`name=value`) written; browsers drop larger ones. */
export const MAX_COOKIE_BYTES = 4096;

/** The default cookie name. */
export const DEFAULT_COOKIE_NAME = "__Host-tessera";

export type SameSite = "lax" | "strict";

export interface CookieSettings {
  name: string;
  secure: boolean;
  sameSite: SameSite;
}

/** What a request presented as its session cookie. */
export type Presented =
  | { kind: "nothing" }
  | { kind: "credential"; value: string }
  | { kind: "unreadable"; problem: string };

const COOKIE_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const CREDENTIAL = /^[A-Za-z0-9_.-]+$/;

/** Refuses settings a browser would not honour (as the Rust layer's `build()`). */
export function checkCookieSettings(settings: CookieSettings): void {
  if (!COOKIE_NAME.test(settings.name)) {
    throw new TypeError(
      `\`${settings.name}\` is not a valid cookie name (letters, digits and !#$%&'*+-.^_\`|~ only)`,
    );
  }
  for (const prefix of ["__Host-", "__Secure-"]) {
    if (settings.name.startsWith(prefix) && !settings.secure) {
      throw new TypeError(
        `the cookie name \`${settings.name}\` has the ${prefix} prefix, which requires the Secure attribute; keep secure: true or choose another name`,
      );
    }
  }
}

/** The session cookie among the request's `Cookie` header(s). */
export function readSessionCookie(header: string | string[] | undefined, name: string): Presented {
  if (header === undefined) return { kind: "nothing" };
  const values = Array.isArray(header) ? header : [header];
  let count = 0;
  let found = "";
  for (const value of values) {
    for (const pair of value.split(";")) {
      const eq = pair.indexOf("=");
      if (eq < 0) continue;
      if (pair.slice(0, eq).trim() === name) {
        count += 1;
        found = pair.slice(eq + 1).trim();
      }
    }
  }
  if (count === 0) return { kind: "nothing" };
  if (count > 1) return { kind: "unreadable", problem: "duplicated session cookie" };
  const capacity = MAX_COOKIE_BYTES - Buffer.byteLength(name) - 1;
  if (found.length > capacity || !CREDENTIAL.test(found)) {
    return { kind: "unreadable", problem: "session cookie is oversized or not credential text" };
  }
  return { kind: "credential", value: found };
}

function attributes(settings: CookieSettings): string {
  const sameSite = settings.sameSite === "strict" ? "Strict" : "Lax";
  return `; HttpOnly; SameSite=${sameSite}${settings.secure ? "; Secure" : ""}; Path=/`;
}

/** `Set-Cookie` storing `token`. */
export function setCookie(settings: CookieSettings, token: string): string {
  if (settings.name.length + 1 + token.length > MAX_COOKIE_BYTES || !CREDENTIAL.test(token)) {
    throw new RangeError("the token cannot be written as a cookie");
  }
  return `${settings.name}=${token}${attributes(settings)}`;
}

/** `Set-Cookie` removing the session cookie. */
export function removalCookie(settings: CookieSettings): string {
  return `${settings.name}=${attributes(settings)}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT`;
}
