/**
 * Signed session tokens, checked with Web Crypto: HAProxy sends the
 * `session` cookie of each request; a token is `<user>.<expiry>.<signature>`,
 * where `expiry` is a Unix time in seconds and `signature` the base64url
 * HMAC-SHA256 of `<user>.<expiry>` under a shared secret. The agent sets
 * `txn.auth.valid` (a boolean), `txn.auth.user` for a valid token, and
 * `txn.auth.reason` for an invalid one (`missing`, `malformed`,
 * `bad-signature`, `expired`). HAProxy denies `/private` without a valid
 * token and passes the user on to the application (`haproxy.cfg`).
 *
 * The secret comes from the module arguments, or from the environment:
 *
 * ```sh
 * spoa --agent examples/signed-token/agent.ts -- --secret "$TOKEN_SECRET"
 * ```
 *
 * @module
 */

import type { AgentContext, Message, Reply } from "../../lib/mod.ts";

const encoder = new TextEncoder();

/** A user name: what HAProxy may put in a header. */
const USER = /^[A-Za-z0-9._@-]{1,64}$/;

/**
 * The HMAC-SHA256 key of a secret.
 *
 * @param secret The shared secret.
 * @returns A key for signing and verifying.
 */
export function importKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/**
 * Makes a token (what the application that logs users in would do).
 *
 * @param key From {@linkcode importKey}.
 * @param user The user name.
 * @param expiry Unix time in seconds.
 * @returns `<user>.<expiry>.<signature>`.
 */
export async function sign(key: CryptoKey, user: string, expiry: number): Promise<string> {
  const payload = `${user}.${expiry}`;
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(payload)));
  return `${payload}.${base64url(mac)}`;
}

/** Why a token is not valid, or the user it names. */
export type Verdict = { user: string } | { reason: string };

/**
 * Checks a token.
 *
 * @param key From {@linkcode importKey}.
 * @param token The cookie's value, if any.
 * @param now Unix time in seconds.
 * @returns The user, or why the token is refused.
 */
export async function verify(
  key: CryptoKey,
  token: string | undefined,
  now: number,
): Promise<Verdict> {
  if (token === undefined || token === "") return { reason: "missing" };
  const parts = token.split(".");
  if (parts.length !== 3) return { reason: "malformed" };
  const [user, expiryText, signature] = parts as [string, string, string];
  const mac = fromBase64url(signature);
  if (!USER.test(user) || !/^\d{1,12}$/.test(expiryText) || mac === undefined) {
    return { reason: "malformed" };
  }
  // verify() compares in constant time.
  const ok = await crypto.subtle.verify("HMAC", key, mac, encoder.encode(`${user}.${expiryText}`));
  if (!ok) return { reason: "bad-signature" };
  if (Number(expiryText) <= now) return { reason: "expired" };
  return { user };
}

function base64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return undefined; // 32 bytes
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "=");
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** The secret from `--secret S` in the module arguments, else `TOKEN_SECRET`. */
function secretOf(context: AgentContext): string {
  const at = context.args.indexOf("--secret");
  const secret = at >= 0 ? context.args[at + 1] : globalThis.process?.env?.TOKEN_SECRET;
  if (secret === undefined || secret.length < 16) {
    throw new Error("a secret of 16 characters or more is needed (-- --secret S, or TOKEN_SECRET)");
  }
  return secret;
}

export default async function signedToken(context: AgentContext) {
  const key = await importKey(secretOf(context));
  return {
    async "check-token"(message: Message, reply: Reply): Promise<void> {
      const verdict = await verify(key, message.string("token"), Math.floor(Date.now() / 1000));
      reply.setVar("txn", "valid", "user" in verdict);
      if ("user" in verdict) reply.setVar("txn", "user", verdict.user);
      else reply.setVar("txn", "reason", verdict.reason);
    },
  };
}
