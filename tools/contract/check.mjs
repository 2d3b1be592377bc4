// The contract as consumers' tools see it, in one Node process.
//
//   node tools/contract/check.mjs SCHEMA_DIR MESSAGES.jsonl OUT_DIR [EVENT...]
//
// 1. @asyncapi/parser validates SCHEMA_DIR/asyncapi.yaml (what `asyncapi validate` runs);
// 2. @asyncapi/modelina generates TypeScript models from it (what `asyncapi generate
//    models` runs): every message payload must become a typed model;
// 3. ajv in JSON Schema 2020-12 strict mode, with ajv-formats and nothing else, loads
//    every schema and validates each message body of MESSAGES.jsonl against the schema
//    that index.json picks for it;
// 4. quicktype writes TypeScript for each EVENT's schema into OUT_DIR and tsc --strict
//    compiles it together with the modelina output; quicktype's Go for the same
//    events goes to OUT_DIR/go, for `go build` to compile.
//
// Prints one JSON object with what each step found; the test suite reads it.

import { readFileSync, readdirSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join, relative } from "node:path";

import { Parser, fromFile } from "@asyncapi/parser";
import { TypeScriptGenerator } from "@asyncapi/modelina";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { quicktype, InputData, JSONSchemaInput, FetchingJSONSchemaStore } from "quicktype-core";
import ts from "typescript";

const [schemaDir, messagesPath, outDir, ...events] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const report = {};

function jsonFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "baseline" ? [] : jsonFiles(path);
    return name.endsWith(".json") && name !== "index.json" ? [path] : [];
  });
}

// 1. The official AsyncAPI parser.
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, join(schemaDir, "asyncapi.yaml")).parse();
report.asyncapi = {
  errors: diagnostics
    .filter((d) => d.severity === 0)
    .map((d) => `${d.path.join(".")}: ${d.message}`),
};

// 2. Models from the AsyncAPI document.
const modelFiles = [];
if (document) {
  const generator = new TypeScriptGenerator({ modelType: "interface" });
  const models = await generator.generate(document);
  const untyped = [];
  const unions = [];
  let code = "";
  for (const model of models) {
    code += `${model.result}\n\n`;
    const text = model.result.trim();
    // A channel with several messages becomes a union of their payloads, which
    // modelina writes as `any | any ...` whatever the payloads: reported apart.
    if (/^(export )?type \w+ = any( \| any)+;?$/.test(text)) {
      unions.push(model.modelName);
      continue;
    }
    // An untyped payload comes out as `type X = any` or an interface of `any`s only.
    const anyOnly = /^(export )?type \w+ = any;?$/.test(text);
    const properties = text.match(/^\s+[\w'"$-]+\??: .+;$/gm) ?? [];
    const typed = properties.filter((line) => !/: any;$/.test(line));
    if (anyOnly || (properties.length > 0 && typed.length === 0)) untyped.push(model.modelName);
  }
  const path = join(outDir, "asyncapi-models.ts");
  writeFileSync(path, code.replace(/^(interface|type|enum|class) /gm, "export $1 "));
  modelFiles.push(path);
  report.modelina = { models: models.length, untyped, unions };
} else {
  report.modelina = { models: 0, untyped: ["(no document)"], unions: [] };
}

// 3. ajv, strict, 2020-12, ajv-formats only.
const ajv = new Ajv2020();
addFormats(ajv);
const loadErrors = [];
const byPath = {};
for (const path of jsonFiles(schemaDir)) {
  const key = relative(schemaDir, path);
  try {
    byPath[key] = ajv.compile(JSON.parse(readFileSync(path, "utf8")));
  } catch (error) {
    loadErrors.push(`${key}: ${error.message}`);
  }
}
const index = JSON.parse(readFileSync(join(schemaDir, "index.json"), "utf8"));
function schemaFor(body) {
  if (body.kind === "invalid") return index.invalid;
  if (body.kind === "status") return index.status[body.event];
  return index.events[body.event.toLowerCase()] ?? index.generic;
}
const invalid = [];
let validated = 0;
for (const line of readFileSync(messagesPath, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const body = JSON.parse(line);
  const key = schemaFor(body);
  const validate = byPath[key];
  if (!validate) {
    invalid.push(`${body.id}: no loadable schema ${key}`);
    continue;
  }
  validated += 1;
  if (!validate(body)) {
    invalid.push(`${body.id} (${key}): ${ajv.errorsText(validate.errors)}`);
  }
}
report.ajv = { schemas: Object.keys(byPath).length, loadErrors, validated, invalid };

// 4. quicktype's TypeScript, compiled by tsc --strict with the modelina output; and
//    its Go, one package per event under OUT_DIR/go (the test suite runs go build).
const quicktypeFiles = [];
const goPackages = [];
async function generate(event, lang, rendererOptions = {}) {
  const schemaInput = new JSONSchemaInput(new FetchingJSONSchemaStore());
  const path = join(schemaDir, index.events[event.toLowerCase()]);
  await schemaInput.addSource({ name: event, schema: readFileSync(path, "utf8") });
  const inputData = new InputData();
  inputData.addInput(schemaInput);
  const result = await quicktype({ inputData, lang, rendererOptions });
  return result.lines.join("\n");
}
mkdirSync(join(outDir, "go"), { recursive: true });
writeFileSync(join(outDir, "go", "go.mod"), "module consumer\n\ngo 1.19\n");
for (const event of events) {
  const out = join(outDir, `quicktype-${event}.ts`);
  writeFileSync(out, await generate(event, "typescript"));
  quicktypeFiles.push(out);
  const pkg = event.toLowerCase().replace(/[^a-z0-9]/g, "");
  mkdirSync(join(outDir, "go", pkg), { recursive: true });
  writeFileSync(join(outDir, "go", pkg, "types.go"), await generate(event, "go", { package: pkg }));
  goPackages.push(pkg);
}
function compile(files) {
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.ES2020,
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${relative(outDir, d.file.fileName)}: ` : "";
    return `${where}TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
  });
}
report.tsc = {
  quicktype: { files: quicktypeFiles.length, errors: compile(quicktypeFiles) },
  modelina: { files: modelFiles.length, errors: compile(modelFiles) },
};
report.go = { dir: join(outDir, "go"), packages: goPackages };

process.stdout.write(`${JSON.stringify(report)}\n`);
