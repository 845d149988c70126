// Validates Kubernetes objects against the API's JSON schemas with kubernetes-models (an ES
// module, hence this separate script run by node rather than inside jest's CommonJS).
// stdin: a JSON array of objects; stdout: a JSON array of { index, kind, name, errors }.
import { readFileSync } from 'node:fs';

const docs = JSON.parse(readFileSync(0, 'utf8'));
const out = [];
for (const [index, doc] of docs.entries()) {
  const kind = doc?.kind;
  const name = doc?.metadata?.name ?? '';
  const errors = [];
  try {
    const mod = await import(`kubernetes-models/${doc.apiVersion}`);
    const Model = mod[kind];
    if (typeof Model !== 'function') errors.push(`kind ${kind} is not in ${doc.apiVersion}`);
    else new Model(doc).validate();
  } catch (err) {
    const list = err?.errors;
    if (Array.isArray(list)) for (const e of list) errors.push(`${e.instancePath || '/'} ${e.message}`);
    else errors.push(String(err?.message ?? err));
  }
  out.push({ index, kind, name, errors });
}
process.stdout.write(JSON.stringify(out));
