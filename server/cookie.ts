/**
 * Stateless address-validation cookies (NDP.md §7.3, as QUIC's Retry token): the server keeps no
 * state per HELLO. A cookie is `issued (u32 BE, seconds) | HMAC-SHA-256(secret, ip|port|issued)[0..16]`
 * and is valid only for the address and port it was issued to, for `lifetimeMs`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const MAC_BYTES = 16;
export const COOKIE_BYTES = 4 + MAC_BYTES;

export class CookieJar {
  private readonly secret: Buffer;

  constructor(readonly lifetimeMs: number, secret: Uint8Array = randomBytes(32)) {
    this.secret = Buffer.from(secret);
  }

  private mac(address: string, port: number, issued: number): Buffer {
    return createHmac('sha256', this.secret).update(`${address}|${port}|${issued}`).digest().subarray(0, MAC_BYTES);
  }

  mint(address: string, port: number, nowMs: number = Date.now()): Uint8Array {
    const issued = Math.floor(nowMs / 1000) >>> 0;
    const out = Buffer.alloc(COOKIE_BYTES);
    out.writeUInt32BE(issued, 0);
    this.mac(address, port, issued).copy(out, 4);
    return out;
  }

  verify(cookie: unknown, address: string, port: number, nowMs: number = Date.now()): boolean {
    if (!(cookie instanceof Uint8Array) || cookie.length !== COOKIE_BYTES) return false;
    const bytes = Buffer.from(cookie.buffer, cookie.byteOffset, cookie.length);
    const issued = bytes.readUInt32BE(0);
    const age = nowMs / 1000 - issued;
    if (age < -1 || age > this.lifetimeMs / 1000) return false;
    return timingSafeEqual(bytes.subarray(4), this.mac(address, port, issued));
  }
}
