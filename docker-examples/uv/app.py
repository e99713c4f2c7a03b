"""Summarise latency samples per endpoint: pyyaml reads them, numpy computes percentiles, rich prints a table.

    docker run --rm IMAGE                 # the bundled samples: the image's smoke check

Exits non-zero when an import fails or a percentile is wrong.
"""

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

SAMPLES = """
/health: [2, 3, 2, 4, 3, 2, 3, 5, 2, 3]
/search: [40, 55, 38, 120, 61, 47, 52, 300, 44, 58]
/upload: [210, 190, 260, 240, 800, 230, 220, 205, 250, 215]
"""

table = Table(title="latency (ms)")
for column in ("endpoint", "p50", "p90", "max"):
    table.add_column(column, justify="right")
summary = {}
for endpoint, values in yaml.safe_load(SAMPLES).items():
    samples = np.asarray(values, dtype=float)
    p50, p90 = np.percentile(samples, [50, 90])
    summary[endpoint] = p50
    table.add_row(endpoint, f"{p50:.1f}", f"{p90:.1f}", f"{samples.max():.0f}")
assert summary == {"/health": 3.0, "/search": 53.5, "/upload": 225.0}, summary
Console(width=60).print(table)
