"""A small pandas analysis: monthly sales per region, the largest month of each.

    docker run --rm IMAGE                 # prints the summary: the image's smoke check

Exits non-zero when an import fails or a figure is wrong.
"""

import numpy as np
import pandas as pd

rng = np.random.default_rng(7)
days = pd.date_range("2026-01-01", "2026-06-30", freq="D")
sales = pd.DataFrame(
    {
        "day": np.tile(days, 3),
        "region": np.repeat(["north", "south", "west"], days.size),
        "amount": rng.gamma(2.0, 50.0, 3 * days.size).round(2),
    }
)
monthly = sales.groupby(["region", sales["day"].dt.to_period("M")])["amount"].sum().unstack("region")
best = monthly.idxmax()
assert monthly.shape == (6, 3) and len(sales) == 3 * 181, monthly.shape
print(monthly.round(0).to_string())
print("largest month:", ", ".join(f"{region} {month}" for region, month in best.items()))
