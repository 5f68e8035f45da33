// SHA-256 for the test bed's proof-of-work gates (Anubis, mCaptcha).
// Plain JavaScript SHA-256 (FIPS 180-4): crypto.subtle exists only in secure
// contexts, and these pages are often plain http.

const rotr = (x, n) => (x >>> n) | (x << (32 - n));

function firstPrimes(count) {
  const primes = [];
  for (let n = 2; primes.length < count; n++) {
    if (primes.every((p) => n % p !== 0)) primes.push(n);
  }
  return primes;
}

// Fractional bits of square roots (initial hash) and cube roots (round constants).
const fraction32 = (x) => ((x % 1) * 2 ** 32) >>> 0;
const PRIMES = firstPrimes(64);
const H0 = PRIMES.slice(0, 8).map((p) => fraction32(Math.sqrt(p)));
const K = PRIMES.map((p) => fraction32(Math.cbrt(p)));

const W = new Uint32Array(64);
const STATE = new Uint32Array(8);

// One 64-byte block at `offset` of `words` (big-endian 32-bit words) into STATE.
function compress(words, offset) {
  for (let i = 0; i < 16; i++) W[i] = words[offset + i];
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15], y = W[i - 2];
    const s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3);
    const s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >>> 10);
    W[i] = W[i - 16] + s0 + W[i - 7] + s1;
  }
  let a = STATE[0], b = STATE[1], c = STATE[2], d = STATE[3];
  let e = STATE[4], f = STATE[5], g = STATE[6], h = STATE[7];
  for (let i = 0; i < 64; i++) {
    const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0;
    d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  STATE[0] += a; STATE[1] += b; STATE[2] += c; STATE[3] += d;
  STATE[4] += e; STATE[5] += f; STATE[6] += g; STATE[7] += h;
}

const ENCODER = new TextEncoder();

export function sha256hex(text) {
  const bytes = ENCODER.encode(text);
  const length = ((bytes.length + 9 + 63) >> 6) << 6;
  const words = new Uint32Array(length >> 2);
  for (let i = 0; i < bytes.length; i++) words[i >> 2] |= bytes[i] << (24 - 8 * (i & 3));
  words[bytes.length >> 2] |= 0x80 << (24 - 8 * (bytes.length & 3));
  const bits = bytes.length * 8;
  words[words.length - 2] = Math.floor(bits / 2 ** 32);
  words[words.length - 1] = bits >>> 0;
  STATE.set(H0);
  for (let offset = 0; offset < words.length; offset += 16) compress(words, offset);
  let hex = "";
  for (let i = 0; i < 8; i++) hex += STATE[i].toString(16).padStart(8, "0");
  return hex;
}
