// Produce one email notification request to Herald's requests topic from Node.js (kafkajs + avsc),
// signed with a producer key of the tenant; prints the notification id.
// Usage: node produce.mjs <recipient email>
// Environment: HERALD_PRODUCER_KEY (required: a producer key's credential, hpk.<key id>.<secret>),
// HERALD_KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:9092), HERALD_TOPIC_PREFIX (herald), HERALD_TENANT (dev),
// HERALD_REQUEST_SCHEMA (NotificationRequest.avsc; by default the one in this repository's schemas/).
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import avro from "avsc";
import { Kafka, Partitioners, logLevel } from "kafkajs";

const [recipientEmail] = process.argv.slice(2);
if (!recipientEmail || !process.env.HERALD_PRODUCER_KEY) {
  console.error("usage: HERALD_PRODUCER_KEY=hpk.<key id>.<secret> node produce.mjs <recipient email>");
  process.exit(2);
}
const BROKERS = (process.env.HERALD_KAFKA_BOOTSTRAP_SERVERS ?? "127.0.0.1:9092").split(",");
const TOPIC = `${process.env.HERALD_TOPIC_PREFIX ?? "herald"}.requests.v1`;
const TENANT = process.env.HERALD_TENANT ?? "dev";
const SCHEMA = process.env.HERALD_REQUEST_SCHEMA ?? new URL("../../schemas/NotificationRequest.avsc", import.meta.url);

// The credential is hpk.<key id>.<secret>: the secret is 32 bytes, 43 characters of base64url without padding.
function producerKey(credential) {
  const parts = /^hpk\.(.+)\.([A-Za-z0-9_-]{43})$/.exec(credential);
  if (!parts) throw new Error("HERALD_PRODUCER_KEY is not a producer key's credential (hpk.<key id>.<secret>)");
  return { id: parts[1], secret: Buffer.from(parts[2], "base64url") };
}

// CRC-64-AVRO (the Rabin fingerprint of the Avro specification) of the schema's parsing canonical form.
const EMPTY = 0xc15d213aa4d7a795n;
const TABLE = Array.from({ length: 256 }, (_, i) => {
  let fp = BigInt(i);
  for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & -(fp & 1n));
  return fp;
});
function fingerprint(canonical) {
  let fp = EMPTY;
  for (const byte of Buffer.from(canonical, "utf8")) fp = (fp >> 8n) ^ TABLE[Number((fp ^ BigInt(byte)) & 0xffn)];
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64LE(fp); // least significant byte first
  return bytes;
}

const key = producerKey(process.env.HERALD_PRODUCER_KEY);
const type = avro.Type.forSchema(JSON.parse(readFileSync(SCHEMA, "utf8")));
// Single-object encoding: C3 01, the 8-byte fingerprint, the Avro binary body. avsc's schema() is the
// schema's parsing canonical form (full names, no docs or defaults), which the fingerprint is taken over.
const marker = Buffer.concat([Buffer.from([0xc3, 0x01]), fingerprint(JSON.stringify(type.schema()))]);

// Fields left out take the schema's defaults (priority normal, no idempotency key, no metadata...).
const request = {
  notification_id: randomUUID(), // yours to choose: a random UUID, as Herald makes one without an idempotency key
  tenant_id: TENANT, // must be the producer key's tenant
  created_at: Date.now(),
  channels: ["email"],
  recipient: { email: recipientEmail },
  content: { subject: "Hello {{ name }}", text: "Hi {{ name }}, from Node.js." },
  variables_json: JSON.stringify({ name: "Ada" }),
};
type.isValid(request, {
  errorHook: (path) => {
    throw new Error(`invalid NotificationRequest field: ${path.join(".")}`);
  },
});
const value = Buffer.concat([marker, type.toBuffer(request)]);
// The signature covers exactly the bytes produced as the value, marker and fingerprint included.
const signature = createHmac("sha256", key.secret).update(value).digest("base64url");

const kafka = new Kafka({ clientId: "herald-node-example", brokers: BROKERS, logLevel: logLevel.WARN });
// Herald's topics exist already (the topics job makes them); the default partitioner is Java's murmur2, as
// Herald's own producers use, so a person's requests land on one partition whichever client sent them.
// kafkajs' idempotent producer is off by default; turn it on for Apache Kafka (the local Tansu has no InitProducerId).
const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
await producer.connect();
try {
  await producer.send({
    topic: TOPIC,
    acks: -1, // durable once acknowledged
    messages: [
      {
        key: `${TENANT}:${recipientEmail}`, // tenant:person keeps one person's notifications in order
        value,
        headers: {
          "herald-tenant": TENANT,
          "herald-kind": "notification_request",
          "herald-signature": `v1,${key.id},${signature}`,
        },
      },
    ],
  });
} finally {
  await producer.disconnect();
}
console.log(request.notification_id);
