//! HMAC heartbeat tokens and constant-time comparison (Web Crypto only).

const encoder = new TextEncoder();

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** An instance's heartbeat token: lowercase hex of
 * HMAC-SHA256(key = UTF-8 `secret`, message = UTF-8 `instanceName`)
 * (DESIGN.md §3.4). The CLI derives the same value at launch. */
export async function heartbeatToken(secret: string, instanceName: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return toHex(await crypto.subtle.sign("HMAC", key, encoder.encode(instanceName)));
}

/** Compares two strings in time independent of where they differ and of
 * their lengths: both are hashed to 32 bytes first, then every byte is
 * compared. Hashing also keeps a wrong guess's length from leaking the
 * secret's length. */
export async function timingSafeEqualStrings(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(a)),
    crypto.subtle.digest("SHA-256", encoder.encode(b)),
  ]);
  const x = new Uint8Array(da);
  const y = new Uint8Array(db);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  // Equal digests with unequal inputs would need a SHA-256 collision.
  return diff === 0;
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | null): string | null {
  if (header === null) return null;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return m ? (m[1] ?? null) : null;
}
