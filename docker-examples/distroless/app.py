"""Validate a deployment's services file and print it as JSON: pyyaml reads, pydantic checks, orjson writes.

    docker run --rm IMAGE                      # checks the bundled services.yaml (the image's smoke check)
    docker run --rm -v $PWD:/in IMAGE /app/app.py /in/services.yaml

Exits 1 with pydantic's message when the file is invalid.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import yaml
from pydantic import BaseModel, Field, ValidationError


class Service(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    image: str
    replicas: int = Field(default=1, ge=1, le=100)
    port: int | None = Field(default=None, ge=1, le=65535)


class Deployment(BaseModel):
    services: list[Service]


def main(path: Path) -> int:
    try:
        deployment = Deployment.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(deployment.model_dump(), option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("services.yaml")))
