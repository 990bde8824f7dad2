// Regenerates src/generated/openapi.ts from tesserad's OpenAPI document.
//
//   node scripts/gen-types.mjs http://127.0.0.1:7450/openapi.json
//   node scripts/gen-types.mjs path/to/openapi.json
//
// The drift test (test/openapi-drift.test.ts) renders the live document
// the same way and fails when the committed file differs.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { render } from "./render-types.mjs";

const source = process.argv[2] ?? process.env.TESSERAD_OPENAPI;
if (!source) {
  console.error("usage: node scripts/gen-types.mjs <openapi.json URL or file>");
  process.exit(2);
}
const text = /^https?:\/\//.test(source)
  ? await (await fetch(source)).text()
  : await readFile(source, "utf8");
const out = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "generated", "openapi.ts");
await writeFile(out, await render(JSON.parse(text)));
console.log(`wrote ${out}`);
