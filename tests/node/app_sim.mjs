// A small simulation of the app, for the end-to-end contract tests (tests/test_e2e_app.py).
//
// It talks to the database the way the real app does: Drizzle ORM over node-postgres, one
// connection per "serverless instance" (a pool of 1), through the transaction pooler, with the
// app's schema (reference/drizzle-app/schema.ts, here in plain JS) and the app's crypto
// (src/lib/crypto.ts: AES-256-GCM, `iv:authTag:ciphertext` lowercase hex, 16-byte IV by default,
// IV_LENGTH=12 as an option). Which fields are secret comes from a registry JSON (`type ===
// "password"`), exactly as the app's registry decides.
//
// Usage:
//   DATABASE_URL=... ENCRYPTION_KEY=<64 hex> [ENCRYPTION_KEY_PREVIOUS=k1,k2] [IV_LENGTH=12] \
//     node app_sim.mjs --registry registry.json  < ops.json  > results.json
//   (FIXED_IV=<hex> makes it the buggy app that encrypts every value with the same IV)
//
// stdin: a JSON array of operations, run in order; stdout: a JSON array with one
// {"ok": result} or {"error": message} per operation. Operations:
//
//   createUser  {email, name?, role?}                       -> {id}
//   install     {userId | userEmail, appId, config?, status?} -> {id}     (password fields encrypted)
//   update      {id, changes, status?}                      -> {id, config}  read, merge, encrypt, write
//                                                             (changes[k] === null removes k; updatedAt: new Date())
//   read        {id}                                        -> {id, userId, appId, status, config, keys, errors}
//   readAll     {}                                          -> [read result, ...] ordered by id
//   writeRaw    {id, config?, status?, updatedAt?}          -> {id}       a buggy app: stored as given
//   insertRaw   {userId | userEmail, appId, config, status?} -> {id}      a buggy app: stored as given
//   uninstall   {id}                                        -> {id}       the row deleted
//   encrypt     {value}  /  decrypt {value}                 -> string     the app's crypto alone
//   loop        {ids, iterations, field, secretField?, secretPrefix?, tag, stopFile?}
//                                                          -> {writes, last: {id: {field: value}}}
//               `iterations` updates round-robin over `ids`, each read-merge-encrypt-write,
//               setting field = `${tag}-${i}` and secretField = `${secretPrefix}secret-${tag}-${i}`;
//               stops early once `stopFile` exists (checked before each write, never waited on).
//   probe       {}                                          -> session settings as a server connection
//                                                             handed out by the pooler sees them, and
//                                                             whether a write is accepted
//
// `read` decrypts with ENCRYPTION_KEY, then each ENCRYPTION_KEY_PREVIOUS (like an app mid-rotation);
// `keys[field]` is the index of the key that fitted (0 = current), `errors[field]` why none did.

import crypto from "node:crypto";
import fs from "node:fs";

import { asc, eq, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import { integer, jsonb, pgEnum, pgTable, serial, timestamp, uniqueIndex, varchar } from "drizzle-orm/pg-core";
import pg from "pg";

// ---- the app's schema (schema.ts, same names) ----------------------------------------------

export const roleEnum = pgEnum("role", ["admin", "customer"]);
export const appStatusEnum = pgEnum("app_status", ["installed", "configured"]);

export const users = pgTable("users", {
  id: serial("id").primaryKey(),
  name: varchar("name", { length: 255 }),
  email: varchar("email", { length: 255 }).notNull().unique(),
  password: varchar("password", { length: 255 }),
  role: roleEnum("role").notNull().default("customer"),
  createdAt: timestamp("created_at").defaultNow(),
});

export const appInstallations = pgTable(
  "app_installations",
  {
    id: serial("id").primaryKey(),
    userId: integer("user_id").notNull().references(() => users.id, { onDelete: "cascade" }),
    appId: varchar("app_id", { length: 100 }).notNull(),
    status: appStatusEnum("status").notNull().default("installed"),
    config: jsonb("config").$type().default({}),
    installedAt: timestamp("installed_at").defaultNow(),
    updatedAt: timestamp("updated_at").defaultNow(),
  },
  (t) => [uniqueIndex("app_installations_user_app_idx").on(t.userId, t.appId)],
);

// ---- the app's crypto (src/lib/crypto.ts) ------------------------------------------------

const keyFromHex = (hex) => {
  const key = Buffer.from(hex, "hex");
  if (key.length !== 32) throw new Error("ENCRYPTION_KEY must be 64 hex characters");
  return key;
};
const KEYS = [process.env.ENCRYPTION_KEY, ...(process.env.ENCRYPTION_KEY_PREVIOUS || "").split(",")]
  .map((k) => (k || "").trim())
  .filter(Boolean)
  .map(keyFromHex);
const IV_LENGTH = Number(process.env.IV_LENGTH || 16);
// A buggy app that reuses one IV (a constant, or a seeded PRNG): FIXED_IV=<hex>.
const FIXED_IV = process.env.FIXED_IV ? Buffer.from(process.env.FIXED_IV, "hex") : null;

export function encrypt(text) {
  if (!KEYS.length) throw new Error("ENCRYPTION_KEY is not set");
  const iv = FIXED_IV || crypto.randomBytes(IV_LENGTH);
  const cipher = crypto.createCipheriv("aes-256-gcm", KEYS[0], iv);
  let encrypted = cipher.update(text, "utf8", "hex");
  encrypted += cipher.final("hex");
  const authTag = cipher.getAuthTag();
  return `${iv.toString("hex")}:${authTag.toString("hex")}:${encrypted}`;
}

function decryptWith(key, encryptedText) {
  const [ivHex, authTagHex, encrypted] = encryptedText.split(":");
  const decipher = crypto.createDecipheriv("aes-256-gcm", key, Buffer.from(ivHex, "hex"));
  decipher.setAuthTag(Buffer.from(authTagHex, "hex"));
  let decrypted = decipher.update(encrypted, "hex", "utf8");
  decrypted += decipher.final("utf8");
  return decrypted;
}

// -> [plaintext, index of the key that fitted]; throws when none does.
export function decrypt(encryptedText) {
  let last;
  for (let index = 0; index < KEYS.length; index++) {
    try {
      return [decryptWith(KEYS[index], encryptedText), index];
    } catch (error) {
      last = error;
    }
  }
  throw last || new Error("ENCRYPTION_KEY is not set");
}

// ---- the registry: which fields are secret --------------------------------------------------

function loadRegistry(path) {
  if (!path) return {};
  return JSON.parse(fs.readFileSync(path, "utf8"));
}

function secretKeys(registry, appId) {
  const app = registry[appId];
  if (!app) return new Set();
  return new Set(app.fields.filter((f) => f.type === "password").map((f) => f.key));
}

// The app's write path: password fields encrypted, "" kept as "" (nothing to hide), null removes.
function encryptChanges(registry, appId, changes) {
  const secrets = secretKeys(registry, appId);
  const out = {};
  for (const [key, value] of Object.entries(changes || {})) {
    out[key] = value !== null && value !== "" && secrets.has(key) ? encrypt(value) : value;
  }
  return out;
}

function merge(config, changes) {
  const merged = { ...(config ?? {}) };
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

// ---- operations ---------------------------------------------------------------------------

function makeOps(db, registry) {
  const readRow = async (id) => {
    const [row] = await db.select().from(appInstallations).where(eq(appInstallations.id, id));
    if (!row) throw new Error(`installation ${id} does not exist`);
    return row;
  };

  const decrypted = (row) => {
    const secrets = secretKeys(registry, row.appId);
    const config = {};
    const keys = {};
    const errors = {};
    for (const [key, value] of Object.entries(row.config ?? {})) {
      if (secrets.has(key) && typeof value === "string" && value !== "") {
        try {
          [config[key], keys[key]] = decrypt(value);
        } catch (error) {
          errors[key] = String(error.message || error);
        }
      } else {
        config[key] = value;
      }
    }
    return { id: row.id, userId: row.userId, appId: row.appId, status: row.status, config, keys, errors };
  };

  // `userEmail` lets one batch create a user and install for it (ids are the database's).
  const userIdOf = async ({ userId, userEmail }) => {
    if (userId !== undefined) return userId;
    const [row] = await db.select({ id: users.id }).from(users).where(eq(users.email, userEmail));
    if (!row) throw new Error(`no user ${userEmail}`);
    return row.id;
  };

  const update = async ({ id, changes, status }) => {
    const row = await readRow(id);
    const config = merge(row.config, encryptChanges(registry, row.appId, changes));
    const values = { config, updatedAt: new Date() };
    if (status) values.status = status;
    await db.update(appInstallations).set(values).where(eq(appInstallations.id, id));
    return { id, config };
  };

  return {
    async createUser({ email, name = null, role = "customer" }) {
      const [row] = await db.insert(users).values({ email, name, role }).returning({ id: users.id });
      return row;
    },
    async install({ userId, userEmail, appId, config = {}, status = "installed" }) {
      const [row] = await db
        .insert(appInstallations)
        .values({ userId: await userIdOf({ userId, userEmail }), appId, status,
          config: encryptChanges(registry, appId, config) })
        .returning({ id: appInstallations.id });
      return row;
    },
    update,
    async read({ id }) {
      return decrypted(await readRow(id));
    },
    async readAll() {
      const rows = await db.select().from(appInstallations).orderBy(asc(appInstallations.id));
      return rows.map(decrypted);
    },
    async writeRaw({ id, config, status, updatedAt }) {
      const values = {};
      if (config !== undefined) values.config = config;
      if (status) values.status = status;
      if (updatedAt) values.updatedAt = new Date(updatedAt);
      await db.update(appInstallations).set(values).where(eq(appInstallations.id, id));
      return { id };
    },
    async insertRaw({ userId, userEmail, appId, config, status = "installed" }) {
      const [row] = await db
        .insert(appInstallations)
        .values({ userId: await userIdOf({ userId, userEmail }), appId, status, config })
        .returning({ id: appInstallations.id });
      return row;
    },
    async uninstall({ id }) {
      await db.delete(appInstallations).where(eq(appInstallations.id, id));
      return { id };
    },
    async encrypt({ value }) {
      return encrypt(value);
    },
    async decrypt({ value }) {
      return decrypt(value)[0];
    },
    async loop({ ids, iterations, field, secretField, secretPrefix = "", tag, stopFile }) {
      const last = {};
      let writes = 0;
      for (let i = 0; i < iterations; i++) {
        if (stopFile && fs.existsSync(stopFile)) break;
        const id = ids[i % ids.length];
        const changes = { [field]: `${tag}-${i}` };
        if (secretField) changes[secretField] = `${secretPrefix}secret-${tag}-${i}`;
        await update({ id, changes });
        last[id] = changes;
        writes++;
      }
      return { writes, last };
    },
    async probe() {
      // Several statements, each its own transaction through the pooler: each may land on a
      // different server connection, which is the point (any of them may carry leaked state).
      const settings = {};
      for (const name of ["default_transaction_read_only", "transaction_read_only", "lock_timeout",
        "statement_timeout", "search_path", "TimeZone", "synchronous_commit"]) {
        const result = await db.execute(sql.raw(`SHOW ${name}`));
        settings[name] = Object.values(result.rows[0])[0];
      }
      const written = await db.execute(sql`UPDATE users SET name = name WHERE false`);
      return { settings, write: written.command };
    },
  };
}

// ---- main ---------------------------------------------------------------------------------

function argument(name) {
  const index = process.argv.indexOf(name);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

async function main() {
  const registry = loadRegistry(argument("--registry"));
  const requests = JSON.parse(fs.readFileSync(0, "utf8"));
  // "Max 1 connection per serverless instance — PgBouncer handles pooling" (the seed).
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 1 });
  const db = drizzle({ client: pool });
  const ops = makeOps(db, registry);
  const results = [];
  try {
    for (const { op, ...args } of requests) {
      const fn = ops[op];
      try {
        if (!fn) throw new Error(`unknown op ${op}`);
        results.push({ ok: await fn(args) });
      } catch (error) {
        results.push({ error: String(error.message || error) });
      }
    }
  } finally {
    await pool.end();
  }
  process.stdout.write(JSON.stringify(results));
}

await main();
