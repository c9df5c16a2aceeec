// The chart's custom resources against their CRDs' schemas, which
// kubeconform has not got offline: the validators generated from the KEDA
// and Prometheus Operator CRDs by the npm packages @kubernetes-models/keda
// and @kubernetes-models/prometheus-operator (types, required fields, enums,
// patterns). Like the API server, they accept fields the CRD does not name
// (it would prune them), so a misspelt optional field is not caught here.
//
//   node custom-resources.mjs MODELS_DIR CUSTOM_RESOURCES.json
//
// MODELS_DIR holds node_modules with both packages; CUSTOM_RESOURCES.json
// is written by manifests.py. A kind without a validator here fails.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modelsDir, resourcesFile] = process.argv.slice(2);
const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js",
  "keda.sh/v1alpha1/TriggerAuthentication": "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication.js",
  "monitoring.coreos.com/v1/PodMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor.js",
  "monitoring.coreos.com/v1/ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
};

const resources = JSON.parse(readFileSync(resourcesFile, "utf8"));
let valid = 0;
let invalid = 0;
for (const { source, object } of resources) {
  const gvk = `${object.apiVersion}/${object.kind}`;
  const file = MODELS[gvk];
  if (!file) {
    console.log(`   ${source}: no schema for ${gvk} (add its model to custom-resources.mjs)`);
    invalid++;
    continue;
  }
  const module = await import(pathToFileURL(join(modelsDir, "node_modules", file)).href);
  try {
    new module[object.kind](object).validate();
    valid++;
  } catch (e) {
    console.log(`   ${source} is invalid: ${e.message}`);
    invalid++;
  }
}
console.log(`   custom resources: ${resources.length} checked against their CRDs - Valid: ${valid}, Invalid: ${invalid}`);
process.exit(invalid ? 1 : 0);
