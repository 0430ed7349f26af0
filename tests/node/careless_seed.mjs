// Seeds "the database of a careless app" (tests/test_careless_app.py, issue 11) with the app's
// own crypto: src/lib/crypto.ts's AES-256-GCM, `iv:authTag:ciphertext` in lowercase hex, no
// AAD — as the app wrote it over the years, under more than one key and IV length.
//
// Usage:
//   [DATABASE_URL=...] KEY_OLD=<64 hex> KEY_NEW=<64 hex> node careless_seed.mjs < plan.json > stored.json
//
// stdin (the plan):
//   {"users": [{id, email}],
//    "installations": [{id, userId, appId, status, config: {field: spec}}]}
//   where each spec is either a string, stored as given, or
//   {"encrypt": plaintext, "key": "old" | "new", "iv": 12 | 16 | any, "damage"?: name}:
//   encrypted exactly as crypto.ts does (Node accepts any IV length, so an app configured with
//   a 10-byte IV really wrote such values), then damaged as a careless write would:
//     tag-nonhex   one character of the tag overwritten with "g"
//     lost-iv      the IV part lost: ":tag:ciphertext"
//     fourth-part  something appended: "iv:tag:ciphertext:00"
//     tag-15       the tag truncated to 15 bytes (Node 20 still decrypts it)
// stdout: {"configs": {id: the config as stored}}.
// With DATABASE_URL set the users and installations are inserted with the ids given (one
// transaction, node-postgres); without it nothing is written (the SQLite copy of the scenario
// is inserted by the test from stdout).

import crypto from "node:crypto";
import fs from "node:fs";

import pg from "pg";

function keyFromHex(hex, name) {
  const key = Buffer.from(hex || "", "hex");
  if (key.length !== 32) throw new Error(`${name} must be 64 hex characters`);
  return key;
}

const KEYS = { old: keyFromHex(process.env.KEY_OLD, "KEY_OLD"), new: keyFromHex(process.env.KEY_NEW, "KEY_NEW") };

// crypto.ts's encrypt, with the key and IV length the app had at the time.
function encrypt(text, key, ivLength) {
  const iv = crypto.randomBytes(ivLength);
  const cipher = crypto.createCipheriv("aes-256-gcm", key, iv);
  let encrypted = cipher.update(text, "utf8", "hex");
  encrypted += cipher.final("hex");
  const authTag = cipher.getAuthTag();
  return `${iv.toString("hex")}:${authTag.toString("hex")}:${encrypted}`;
}

const DAMAGE = {
  "tag-nonhex": (iv, tag, body) => `${iv}:${tag.slice(0, 5)}g${tag.slice(6)}:${body}`,
  "lost-iv": (iv, tag, body) => `:${tag}:${body}`,
  "fourth-part": (iv, tag, body) => `${iv}:${tag}:${body}:00`,
  "tag-15": (iv, tag, body) => `${iv}:${tag.slice(0, 30)}:${body}`,
};

function stored(spec) {
  if (typeof spec === "string") return spec;
  const key = KEYS[spec.key];
  if (!key) throw new Error(`unknown key ${spec.key}`);
  const value = encrypt(spec.encrypt, key, spec.iv);
  if (!spec.damage) return value;
  const damage = DAMAGE[spec.damage];
  if (!damage) throw new Error(`unknown damage ${spec.damage}`);
  return damage(...value.split(":"));
}

async function insert(url, users, installations) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("BEGIN");
    for (const { id, email } of users) {
      await client.query("INSERT INTO users (id, email, role) VALUES ($1, $2, 'customer')", [id, email]);
    }
    for (const { id, userId, appId, status, config } of installations) {
      await client.query(
        "INSERT INTO app_installations (id, user_id, app_id, status, config) VALUES ($1, $2, $3, $4, $5::jsonb)",
        [id, userId, appId, status, JSON.stringify(config)],
      );
    }
    await client.query("COMMIT");
  } finally {
    await client.end();
  }
}

const plan = JSON.parse(fs.readFileSync(0, "utf8"));
const installations = plan.installations.map((row) => ({
  ...row,
  config: Object.fromEntries(Object.entries(row.config).map(([field, spec]) => [field, stored(spec)])),
}));
if (process.env.DATABASE_URL) await insert(process.env.DATABASE_URL, plan.users, installations);
process.stdout.write(JSON.stringify({ configs: Object.fromEntries(installations.map((r) => [r.id, r.config])) }));
