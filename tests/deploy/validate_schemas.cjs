// Validates Kubernetes objects against the JSON schemas of kubernetes-models (the version
// package-lock.json pins: Kubernetes v1.33.0's OpenAPI), offline, and refuses fields the API does
// not define. The schemas accept unknown fields, as Kubernetes' OpenAPI does (the API server's
// strict field validation refuses them); the models' type declarations (.d.ts, generated from the
// same OpenAPI) name every field, and a misspelt one ("readinesProbe") is refused here.
//   node validate_schemas.cjs NODE_PREFIX < objects.json
// objects.json: a JSON array of objects (apiVersion, kind, ...). Prints a JSON array with one
// entry per object: {"kind", "name", "errors": [...]} (errors empty when valid; an object whose
// apiVersion/kind has no model is an error too). Exit 0 when all are valid, 1 otherwise.
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const prefix = process.argv[2];
if (!prefix) {
  console.error("usage: node validate_schemas.cjs NODE_PREFIX < objects.json");
  process.exit(2);
}
const load = createRequire(path.join(prefix, "node_modules", "kubernetes-models", "package.json"));

// "apps/v1" -> "apps/v1", "v1" (the core group) -> "v1": kubernetes-models' own layout.
function modelOf(object) {
  const module = `kubernetes-models/${object.apiVersion}/${object.kind}`;
  try {
    return load(module)[object.kind];
  } catch (error) {
    return null;
  }
}

// --- Unknown fields, from the type declarations -------------------------------------------------
// Each .d.ts declares one interface ("export interface IProbe {"), one property a line at four
// spaces ("    \"exec\"?: IIoK8sApiCoreV1ExecAction;", a map over several lines:
// "    \"labels\"?: {" ... "[key: string]: string;" ... "    };"), and imports the interfaces it
// names from other files. A type it cannot follow (a union, IntOrString, Quantity) is not looked
// into: no false alarm, only fewer checks there.

const declarations = new Map();  // .d.ts path -> {properties: Map(name -> type text), imports, file}

function declaration(file) {
  if (declarations.has(file)) return declarations.get(file);
  let parsed = null;
  if (fs.existsSync(file)) {
    const lines = fs.readFileSync(file, "utf8").split("\n");
    const imports = new Map();
    for (const line of lines) {
      const found = line.match(/^import \{ ([^}]+) \} from "([^"]+)";/);
      if (found) for (const name of found[1].split(",")) imports.set(name.trim(), found[2]);
    }
    const start = lines.findIndex((line) => /^export interface \w+( extends [\w, ]+)? \{$/.test(line));
    if (start >= 0) {
      const properties = new Map();
      if (/ extends .*TypeMeta/.test(lines[start])) {
        properties.set("apiVersion", "string");
        properties.set("kind", "string");
      }
      for (let i = start + 1; i < lines.length && lines[i] !== "}"; i++) {
        const found = lines[i].match(/^    "([^"]+)"\??: (.*)$/);
        if (!found) continue;
        let type = found[2];
        if (type === "{") {  // a map over the following lines
          const value = lines[i + 1].match(/\[key: string\]: (.*);$/);
          type = value ? `{ [key: string]: ${value[1]}; }` : "unknown";
        }
        properties.set(found[1], type.replace(/;$/, ""));
      }
      parsed = { properties, imports, file };
    }
  }
  declarations.set(file, parsed);
  return parsed;
}

function importedFile(from, name) {
  const specifier = from.imports.get(name);
  if (!specifier) return null;
  if (specifier.startsWith(".")) return path.resolve(path.dirname(from.file), specifier + ".d.ts");
  try {
    return load.resolve(specifier).replace(/\.(c|m)?js$/, ".d.ts");
  } catch (error) {
    return null;
  }
}

function unknownFields(value, type, from, where, found) {
  if (value === null || typeof value !== "object") return;
  let array = type.match(/^Array<(.+)>$/);
  if (array) {
    if (Array.isArray(value)) value.forEach((item, i) => unknownFields(item, array[1], from, `${where}/${i}`, found));
    return;
  }
  const map = type.match(/^\{ \[key: string\]: (.+); \}$/);
  if (map) {
    for (const [key, item] of Object.entries(value)) unknownFields(item, map[1], from, `${where}/${key}`, found);
    return;
  }
  if (!/^I\w+$/.test(type)) return;
  const file = importedFile(from, type);
  const target = file && declaration(file);
  if (target) checkObject(value, target, where, found);
}

function checkObject(value, target, where, found) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return;
  for (const [key, item] of Object.entries(value)) {
    const type = target.properties.get(key);
    if (type === undefined) found.push(`${where || "/"} has no field "${key}"`);
    else unknownFields(item, type, target, `${where}/${key}`, found);
  }
}

function modelDeclaration(object) {
  try {
    const file = load.resolve(`kubernetes-models/${object.apiVersion}/${object.kind}`);
    return declaration(file.replace(/\.(c|m)?js$/, ".d.ts"));
  } catch (error) {
    return null;
  }
}

const objects = JSON.parse(fs.readFileSync(0, "utf8"));
const results = objects.map((object) => {
  const name = object.metadata && object.metadata.name;
  const Model = modelOf(object);
  if (!Model) {
    return { kind: object.kind, name, errors: [`no schema for ${object.apiVersion} ${object.kind}`] };
  }
  const errors = [];
  try {
    new Model(object).validate();
  } catch (error) {
    const details = (error.errors || []).map((e) => `${e.instancePath || "/"} ${e.message}`);
    errors.push(...(details.length ? details : [String(error.message)]));
  }
  const top = modelDeclaration(object);
  if (!top) errors.push(`no type declaration for ${object.apiVersion} ${object.kind}`);
  else checkObject(object, top, "", errors);
  return { kind: object.kind, name, errors };
});
process.stdout.write(JSON.stringify(results, null, 1) + "\n");
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
