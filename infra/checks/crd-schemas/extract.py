"""Write the JSON schema of each CRD given (its served versions' openAPIV3Schema) next to this file.

    python infra/checks/crd-schemas/extract.py CRD.yaml...

check_deploy.sh validates the chart's custom resources against these files: no cluster, no network.
"""

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def main(paths: list[str]) -> None:
    """Write <kind>-<group>-<version>.json for every served version of every CRD in ``paths``."""
    for path in paths:
        crd = yaml.safe_load(Path(path).read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                target = HERE / f"{kind.lower()}-{group}-{version['name']}.json"
                schema = version["schema"]["openAPIV3Schema"]
                target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                print(target.name)


if __name__ == "__main__":
    main(sys.argv[1:])
