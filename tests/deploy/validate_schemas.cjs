// Validates Kubernetes objects against the JSON schemas of kubernetes-models (the version
// package-lock.json pins: Kubernetes v1.33.0's OpenAPI), offline.
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

const objects = JSON.parse(fs.readFileSync(0, "utf8"));
const results = objects.map((object) => {
  const name = object.metadata && object.metadata.name;
  const Model = modelOf(object);
  if (!Model) {
    return { kind: object.kind, name, errors: [`no schema for ${object.apiVersion} ${object.kind}`] };
  }
  try {
    new Model(object).validate();
    return { kind: object.kind, name, errors: [] };
  } catch (error) {
    const details = (error.errors || []).map((e) => `${e.instancePath || "/"} ${e.message}`);
    return { kind: object.kind, name, errors: details.length ? details : [String(error.message)] };
  }
});
process.stdout.write(JSON.stringify(results, null, 1) + "\n");
process.exit(results.every((r) => r.errors.length === 0) ? 0 : 1);
