"""govsync's side of the rendered chart, which no Kubernetes schema knows.

    python3 manifests.py config/govsync.toml CUSTOM_RESOURCES.json RENDERED.yaml...

- Every govsync.toml in a ConfigMap parses as TOML and uses only keys that
  config/govsync.toml (which lists every key) has: govsync refuses unknown
  keys at startup, so a typo in the chart's config would crash-loop pods.
- Every GOVSYNC_<SECTION>__<KEY> variable names a key of config/govsync.toml,
  and no other GOVSYNC_ variable is set but the two password variables
  (src/config/suggest.rs refuses the rest as misspelt overrides).
- Every pod has enableServiceLinks: false, or Kubernetes would add
  GOVSYNC_METRICS_PORT and the like for the release's Services.
- The custom resources (KEDA, Prometheus Operator) are written to
  CUSTOM_RESOURCES.json for custom-resources.mjs, which knows their CRDs.
"""

import json
import sys
import tomllib

import yaml

# Free-form tables: kafka.client holds librdkafka properties.
FREE_FORM = {("kafka", "client")}
# GOVSYNC_ variables that are not configuration (src/config/suggest.rs).
NOT_CONFIG = {"GOVSYNC_DB_PASSWORD", "GOVSYNC_KAFKA_SASL_PASSWORD", "GOVSYNC_CONFIG"}
CORE_GROUPS = {"v1", "apps", "batch", "policy"}


def key_paths(table, prefix=()):
    for key, value in table.items():
        path = prefix + (key,)
        yield path
        if isinstance(value, dict) and path not in FREE_FORM:
            yield from key_paths(value, path)


def pod_specs(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") in ("StatefulSet", "Deployment", "Job"):
        yield spec["template"]["spec"]


def main(reference_path, custom_out, rendered):
    with open(reference_path, "rb") as f:
        # kafka.client is only a comment there.
        known = set(key_paths(tomllib.load(f))) | FREE_FORM
    errors, custom, configs, variables, pods = [], [], 0, 0, 0
    for path in rendered:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            where = f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            group = doc.get("apiVersion", "").split("/")[0]
            if group not in CORE_GROUPS:
                custom.append({"source": where, "object": doc})
            toml_text = (doc.get("data") or {}).get("govsync.toml") if doc.get("kind") == "ConfigMap" else None
            if toml_text is not None:
                configs += 1
                try:
                    cfg = tomllib.loads(toml_text)
                except tomllib.TOMLDecodeError as e:
                    errors.append(f"{where}: govsync.toml is not TOML: {e}")
                    continue
                for p in key_paths(cfg):
                    if p not in known:
                        errors.append(f"{where}: govsync.toml: unknown key {'.'.join(p)} (config/govsync.toml lists every key)")
            for pod in pod_specs(doc):
                pods += 1
                if pod.get("enableServiceLinks") is not False:
                    errors.append(f"{where}: enableServiceLinks must be false (Service variables like GOVSYNC_METRICS_PORT stop govsync)")
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    for env in c.get("env", []):
                        name = env["name"]
                        if not name.startswith("GOVSYNC_") or name in NOT_CONFIG:
                            continue
                        variables += 1
                        parts = tuple(name[len("GOVSYNC_"):].lower().split("__"))
                        if len(parts) < 2 or parts not in known:
                            errors.append(f"{where}: container {c['name']}: {name} is no key of config/govsync.toml")
    with open(custom_out, "w") as f:
        json.dump(custom, f)
    for e in errors:
        print(f"   {e}")
    print(f"   govsync: {configs} govsync.toml, {variables} GOVSYNC_ variables, {pods} pod specs checked; "
          f"{len(custom)} custom resources for their CRDs; {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: manifests.py config/govsync.toml CUSTOM_RESOURCES.json RENDERED.yaml...")
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
