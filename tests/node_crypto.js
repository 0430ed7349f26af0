// The app's src/lib/crypto.ts, as a typical Next.js app writes it (key from the environment,
// 16-byte IV unless told otherwise), plus a batch driver so one `node` run serves a whole test.
const crypto = require("crypto");
const KEY = () => Buffer.from(process.env.ENCRYPTION_KEY, "hex");
const IV_LENGTH = () => Number(process.env.IV_LENGTH || 16);

function encrypt(text) {
  const iv = crypto.randomBytes(IV_LENGTH());
  const cipher = crypto.createCipheriv("aes-256-gcm", KEY(), iv);
  let encrypted = cipher.update(text, "utf8", "hex");
  encrypted += cipher.final("hex");
  const authTag = cipher.getAuthTag();
  return `${iv.toString("hex")}:${authTag.toString("hex")}:${encrypted}`;
}

function decrypt(encryptedText) {
  const [ivHex, authTagHex, encrypted] = encryptedText.split(":");
  const decipher = crypto.createDecipheriv("aes-256-gcm", KEY(), Buffer.from(ivHex, "hex"));
  decipher.setAuthTag(Buffer.from(authTagHex, "hex"));
  let decrypted = decipher.update(encrypted, "hex", "utf8");
  decrypted += decipher.final("utf8");
  return decrypted;
}

// Key derivations other apps use (hex of the 32 bytes), for the derivation tests.
const derive = {
  raw: (k) => Buffer.from(k).toString("hex"),
  sha256: (k) => crypto.createHash("sha256").update(k).digest("hex"),
  scrypt: (k, salt) => crypto.scryptSync(k, salt, 32).toString("hex"),
};

// stdin: JSON [{op: "encrypt"|"decrypt"|"raw"|"sha256"|"scrypt", value, salt?}, ...]
// stdout: JSON [{ok: result} | {error: message}, ...] in the same order.
const requests = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = requests.map(({ op, value, salt }) => {
  try {
    const fn = { encrypt, decrypt, ...derive }[op];
    return { ok: fn(value, salt) };
  } catch (e) {
    return { error: String(e.message || e) };
  }
});
process.stdout.write(JSON.stringify(results));
