"""Kubernetes JSON schemas for kubeconform, offline.

kubeconform fetches its schemas from GitHub, which CI cannot reach. The
PyPI package kubernetes-validate ships the same schemas (generated from
Kubernetes' OpenAPI documents) for every release it supports, in a form
that points at a shared definitions file by an absolute URL. This takes the
strict variant of the wanted releases out of the wheel and makes each file
point at its neighbour instead, so kubeconform resolves everything from
disk:

    python3 schemas.py WHEEL OUTDIR 1.31.0 1.37.0

writes OUTDIR/v1.31.0-local-strict/statefulset-apps-v1.json and so on,
which kubeconform finds with
    -schema-location 'OUTDIR/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'
"""

import json
import os
import sys
import zipfile

PREFIX = "kubernetes_validate/kubernetes-json-schema/"
# Each kind's file refers to "/api/_definitions.json#/$defs/...", resolved
# against its "$id" (https://kubernetes.io/api/...): a web address.
ABSOLUTE_DEFS = "/api/_definitions.json#"


def relative_refs(node):
    """Rewrites every $ref to the shared definitions as a sibling file."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(ABSOLUTE_DEFS):
            node["$ref"] = "_definitions.json#" + ref[len(ABSOLUTE_DEFS):]
        for value in node.values():
            relative_refs(value)
    elif isinstance(node, list):
        for value in node:
            relative_refs(value)


def main(wheel, outdir, versions):
    with zipfile.ZipFile(wheel) as z:
        for version in versions:
            folder = f"v{version}-local-strict/"
            names = [n for n in z.namelist() if n.startswith(PREFIX + folder) and n.endswith(".json")]
            if not names:
                sys.exit(f"schemas.py: {wheel} has no schemas for Kubernetes {version}")
            target = os.path.join(outdir, folder)
            os.makedirs(target, exist_ok=True)
            for name in names:
                schema = json.loads(z.read(name))
                if isinstance(schema, dict):
                    # Without an $id, references resolve against the file.
                    schema.pop("$id", None)
                relative_refs(schema)
                with open(os.path.join(target, os.path.basename(name)), "w") as f:
                    json.dump(schema, f)
            print(f"  Kubernetes {version}: {len(names)} schemas")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: schemas.py WHEEL OUTDIR VERSION...")
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
