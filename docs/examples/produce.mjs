// Produce one notification request to Herald's requests topic from Node.js: kafkajs + avsc.
// Usage: node produce.mjs <path to schemas/NotificationRequest.avsc>
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import avro from "avsc";
import { Kafka } from "kafkajs";

const BROKERS = (process.env.HERALD_KAFKA_BOOTSTRAP_SERVERS ?? "127.0.0.1:9092").split(",");
const TOPIC = `${process.env.HERALD_TOPIC_PREFIX ?? "herald"}.requests.v1`;
const TENANT = "dev";

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
  bytes.writeBigUInt64LE(fp);
  return bytes;
}

const type = avro.Type.forSchema(JSON.parse(readFileSync(process.argv[2], "utf8")));
// Single-object encoding: C3 01, the 8-byte fingerprint (little-endian), the Avro binary body.
// avsc's getSchema() is the schema's parsing canonical form, which the fingerprint is taken over.
const header = Buffer.concat([Buffer.from([0xc3, 0x01]), fingerprint(JSON.stringify(type.getSchema()))]);

const request = type.clone(
  {
    notification_id: randomUUID(),
    tenant_id: TENANT,
    created_at: Date.now(),
    channels: ["email"],
    recipient: { email: "ada@example.com" },
    content: { subject: "Hello {{ name }}", text: "Hi {{ name }}, from Node.js." },
    variables_json: JSON.stringify({ name: "Ada" }),
  },
  { wrapUnions: false },
);

const producer = new Kafka({ clientId: "herald-node-example", brokers: BROKERS }).producer();
await producer.connect();
await producer.send({
  topic: TOPIC,
  acks: -1,
  messages: [
    {
      // tenant:person keeps one person's notifications in order.
      key: `${TENANT}:ada@example.com`,
      value: Buffer.concat([header, type.toBuffer(request)]),
      headers: { "herald-tenant": TENANT, "herald-kind": "notification_request" },
    },
  ],
});
await producer.disconnect();
console.log(request.notification_id);
