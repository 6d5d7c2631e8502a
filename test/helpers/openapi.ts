/** Reads the server's OpenAPI document, to check that what a route answers is what it documents. */

type Schema = { $ref?: string; allOf?: Schema[]; properties?: Record<string, Schema>; items?: Schema };
export interface OpenApiDoc {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: Schema }> }> }>>;
  components: { schemas: Record<string, Schema> };
}

function resolve(doc: OpenApiDoc, s: Schema): Schema {
  if (s.$ref === undefined) return s;
  const name = s.$ref.replace('#/components/schemas/', '');
  const target = doc.components.schemas[name];
  if (!target) throw new Error(`the document refers to a schema it lacks: ${s.$ref}`);
  return resolve(doc, target);
}

/** The property names a schema documents, through `$ref` and `allOf`. */
export function documentedKeys(doc: OpenApiDoc, schema: Schema): Set<string> {
  const s = resolve(doc, schema);
  const keys = new Set(Object.keys(s.properties ?? {}));
  for (const part of s.allOf ?? []) for (const k of documentedKeys(doc, part)) keys.add(k);
  return keys;
}

/** The schema of a property (`items` of an array is followed), through `$ref` and `allOf`. */
export function propertySchema(doc: OpenApiDoc, schema: Schema, key: string): Schema {
  const s = resolve(doc, schema);
  const found = s.properties?.[key] ?? (s.allOf ?? []).map((p) => resolve(doc, p).properties?.[key]).find((x) => x !== undefined);
  if (!found) throw new Error(`no property ${key} documented`);
  const r = resolve(doc, found);
  return r.items ?? r;
}

/** A route's documented JSON answer. */
export function responseSchema(doc: OpenApiDoc, path: string, method = 'get', status = '200'): Schema {
  const schema = doc.paths[path]?.[method]?.responses[status]?.content?.['application/json']?.schema;
  if (!schema) throw new Error(`${method.toUpperCase()} ${path} documents no JSON answer for ${status}`);
  return schema;
}

/** The keys of `value` the schema does not document (an empty list when all are). */
export function undocumentedKeys(doc: OpenApiDoc, schema: Schema, value: object): string[] {
  const keys = documentedKeys(doc, schema);
  return Object.keys(value).filter((k) => !keys.has(k));
}
