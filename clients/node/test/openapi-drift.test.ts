/**
 * The committed types (src/generated/openapi.ts) are what tesserad's live
 * `GET /openapi.json` renders to: a change of the server's document (a
 * field, an error code, an endpoint) fails here until the types are
 * regenerated with `npm run gen:types -- <url>` and the client follows.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { pathToFileURL } from "node:url";

import { startTesserad, type Tesserad } from "./helpers/tesserad";

const PACKAGE = join(__dirname, "..", "..");
let server: Tesserad;

before(async () => {
  server = await startTesserad();
});
after(async () => server?.stop());

it("the committed types match the server's OpenAPI document", async () => {
  const { render } = (await import(pathToFileURL(join(PACKAGE, "scripts", "render-types.mjs")).href)) as {
    render(document: unknown): Promise<string>;
  };
  const live = await render(await server.client.openapi());
  const committed = readFileSync(join(PACKAGE, "src", "generated", "openapi.ts"), "utf8");
  if (live !== committed) {
    const liveLines = live.split("\n");
    const committedLines = committed.split("\n");
    const line = liveLines.findIndex((text, i) => text !== committedLines[i]);
    assert.fail(
      `src/generated/openapi.ts is out of date with ${server.url}/openapi.json; first difference at line ${line + 1}:\n` +
        `  committed: ${committedLines[line]}\n  server:    ${liveLines[line]}\n` +
        "regenerate with: npm run gen:types -- <tesserad>/openapi.json",
    );
  }
});

it("a changed document is noticed", async () => {
  // The check above is only worth something if a change shows: drop one field.
  const { render } = (await import(pathToFileURL(join(PACKAGE, "scripts", "render-types.mjs")).href)) as {
    render(document: unknown): Promise<string>;
  };
  const document = (await server.client.openapi()) as {
    components: { schemas: { SessionView: { properties: Record<string, unknown> } } };
  };
  delete document.components.schemas.SessionView.properties.last_seen_at;
  const committed = readFileSync(join(PACKAGE, "src", "generated", "openapi.ts"), "utf8");
  assert.notEqual(await render(document), committed);
});
