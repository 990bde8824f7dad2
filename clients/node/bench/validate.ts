/**
 * What the client adds per validation: the same sequential loop of
 * `POST /v1/sessions/validate` against one tesserad (memory store), once as
 * a bare `node:http` call on a kept-alive connection (body sent, answer
 * read, nothing parsed), once through `TesseraClient.validate` (JSON in and
 * out, typed result, errors mapped), and once with `fetch` for reference.
 * Rounds alternate; the median of the rounds is reported, in µs per call:
 * wall time (dominated by the server) and this process's CPU time (what the
 * client itself costs, steadier on a shared machine).
 *
 *   npm run bench                      (ITERATIONS=3000 ROUNDS=7 by default)
 */
import * as http from "node:http";

import { startTesserad } from "../test/helpers/tesserad";

const ITERATIONS = Number(process.env.ITERATIONS ?? 3000);
const ROUNDS = Number(process.env.ROUNDS ?? 7);

async function main(): Promise<void> {
  const server = await startTesserad();
  const url = new URL(server.url);
  const issued = await server.client.create({ subject: "bench", data: { theme: "dark", cart: [1, 2, 3] } });
  const clientInfo = { ip: "203.0.113.9", user_agent: "Bench/1.0" };
  const body = JSON.stringify({ token: issued.token, client: clientInfo });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

  const bare = (parse = false) =>
    new Promise<void>((resolve, reject) => {
      const request = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          method: "POST",
          path: "/v1/sessions/validate",
          headers: {
            authorization: `Bearer ${server.apiKey}`,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
          },
        },
        (response) => {
          if (response.statusCode !== 200) reject(new Error(`status ${response.statusCode}`));
          if (!parse) {
            response.on("data", () => undefined);
            response.on("end", resolve);
            return;
          }
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => {
            const valid = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { session: { subject: string } };
            if (valid.session.subject !== "bench") reject(new Error("wrong session"));
            resolve();
          });
        },
      );
      request.on("error", reject);
      request.end(body);
    });
  const viaFetch = async () => {
    const response = await fetch(`${server.url}/v1/sessions/validate`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
      body,
    });
    if (response.status !== 200) throw new Error(`status ${response.status}`);
    await response.arrayBuffer();
  };
  const viaClient = async () => {
    const valid = await server.client.validate(issued.token, clientInfo);
    if (valid.session.subject !== "bench") throw new Error("wrong session");
  };

  const cases: Array<[string, () => Promise<void>]> = [
    ["bare node:http", () => bare()],
    ["bare + JSON.parse", () => bare(true)],
    ["TesseraClient.validate", viaClient],
    ["fetch (reference)", viaFetch],
  ];
  const samples = new Map<string, number[]>(cases.map(([name]) => [name, []]));
  const cpu = new Map<string, number[]>(cases.map(([name]) => [name, []]));
  for (const [, run] of cases) for (let i = 0; i < 300; i++) await run(); // warm up
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, run] of cases) {
      const started = process.hrtime.bigint();
      const usage = process.cpuUsage();
      for (let i = 0; i < ITERATIONS; i++) await run();
      const micros = Number(process.hrtime.bigint() - started) / 1000 / ITERATIONS;
      const spent = process.cpuUsage(usage);
      samples.get(name)!.push(micros);
      cpu.get(name)!.push((spent.user + spent.system) / ITERATIONS);
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const base = median(samples.get("bare node:http")!);
  const baseCpu = median(cpu.get("bare node:http")!);
  const signed = (value: number) => `${value >= 0 ? "+" : ""}${value.toFixed(1)}`;
  console.log(`validate, ${ROUNDS} rounds x ${ITERATIONS} sequential calls, medians in µs per call (node ${process.version})`);
  console.log(`  ${"".padEnd(24)} ${"wall".padStart(8)} ${"vs bare".padStart(8)} ${"client CPU".padStart(11)} ${"vs bare".padStart(8)}`);
  for (const [name] of cases) {
    const wall = median(samples.get(name)!);
    const own = median(cpu.get(name)!);
    console.log(
      `  ${name.padEnd(24)} ${wall.toFixed(1).padStart(8)} ${signed(wall - base).padStart(8)} ${own.toFixed(1).padStart(11)} ${signed(own - baseCpu).padStart(8)}`,
    );
  }
  agent.destroy();
  await server.stop();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
