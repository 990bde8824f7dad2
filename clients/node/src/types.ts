/**
 * The API's bodies, as named in tesserad's OpenAPI document. Everything
 * here is derived from `./generated/openapi.ts`, which is generated from
 * the server's `GET /openapi.json` (see scripts/gen-types.mjs), so a change
 * of the document changes these types or fails the drift test.
 */
import type { components, operations } from "./generated/openapi";

type Schemas = components["schemas"];

/** Session data: a JSON object. */
export type SessionData = Record<string, unknown>;

/** `{ip?, user_agent?}`: the client a request is made for. */
export type ClientInfo = Schemas["ClientBody"];

/** The client as a session shows it. */
export type ClientView = Required<Schemas["ClientView"]>;

/**
 * A session as tesserad shows it (times are RFC 3339 in UTC). The server
 * always sends every field, `null` where there is no value; the document
 * marks the nullable ones optional, which this type tightens.
 */
export type Session = Omit<Required<Schemas["SessionView"]>, "client"> & {
  client: ClientView | null;
};

/** `POST /v1/sessions`. */
export type CreateRequest = Schemas["CreateRequest"];
/** `POST /v1/sessions/login` (`token` is the current session's, if any). */
export type LoginRequest = Schemas["LoginRequest"];
/** `POST /v1/sessions/update`: `data` (replace) or `patch` (RFC 7396 merge), optionally at `version`. */
export type UpdateRequest = Schemas["UpdateRequest"];
/** `POST /v1/sessions/validate`. */
export type ValidateRequest = Schemas["ValidateRequest"];

/** A session with a newly issued token (create, login, rotate). */
export interface Issued {
  /** The new token: hand it to the client (e.g. in a cookie), never log it. */
  token: string;
  session: Session;
}

/** The outcome of a validation: `token` is set when the token was renewed. */
export interface Validated {
  session: Session;
  /** Present when validation renewed the token: the client must switch to it. */
  token?: string;
}

/** `GET /v1/stats`. */
export type Stats = Schemas["StatsResponse"];
/** `GET /healthz`, `GET /readyz`. */
export type Health = Schemas["HealthResponse"];
/** The error codes tesserad sends. */
export type ServerErrorCode = Schemas["ErrorCode"];
/** Why a session is invalid (`reason` of `invalid_session`). */
export type InvalidReason = Schemas["Reason"];
/** An error body as tesserad sends it. */
export type ErrorBody = Schemas["ErrorBody"];

/** The operation ids of the document (the client has one method per id). */
export type OperationId = keyof operations;

// Compile-time checks that the tightened types stay what the wire carries.
type Assert<T extends true> = T;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export type _IssuedMatches = Assert<Same<keyof Issued, keyof Schemas["IssuedResponse"]>>;
export type _ValidatedMatches = Assert<Same<keyof Validated, keyof Schemas["ValidateResponse"]>>;
export type _SessionMatches = Assert<Same<keyof Session, keyof Schemas["SessionView"]>>;
