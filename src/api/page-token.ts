// Opaque page tokens for ListActions: where the last page ended, bound to
// the filters it was read with, so that a token cannot be replayed against
// a different query by mistake.
import { createHash } from "node:crypto";
import { invalidField } from "../errors.js";

interface TokenBody {
  /** Next page: ids below this one. */
  before: string;
  /** Digest of the filters. */
  filter: string;
}

export function filterDigest(filters: unknown): string {
  return createHash("sha256").update(JSON.stringify(filters)).digest("base64url").slice(0, 16);
}

export function encodePageToken(before: string, filters: unknown): string {
  const body: TokenBody = { before, filter: filterDigest(filters) };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

/** The id to continue below, or null for the first page. */
export function decodePageToken(field: string, token: string, filters: unknown): string | null {
  if (token === "") return null;
  let body: Partial<TokenBody>;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Partial<TokenBody>;
  } catch {
    throw invalidField(field, "is not a token returned by ListActions");
  }
  if (typeof body.before !== "string" || !/^[1-9][0-9]{0,18}$/.test(body.before)) throw invalidField(field, "is not a token returned by ListActions");
  if (body.filter !== filterDigest(filters)) throw invalidField(field, "was issued for different filters; start again without a page_token");
  return body.before;
}
