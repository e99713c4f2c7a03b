"""A small analysis that touches each library of the image: fit, summarise, write Parquet, plot.

No display in a container: matplotlib picks its Agg backend by itself.
"""

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats
from sklearn.linear_model import LinearRegression

rng = np.random.default_rng(0)
x = rng.uniform(0, 10, 200)
frame = pd.DataFrame({"x": x, "y": 3 * x + 2 + rng.normal(0, 1, x.size)})

model = LinearRegression().fit(frame[["x"]], frame["y"])
r = stats.pearsonr(frame["x"], frame["y"]).statistic

buffer = io.BytesIO()
frame.to_parquet(buffer)
rows = pq.read_table(io.BytesIO(buffer.getvalue())).num_rows

figure, axes = plt.subplots()
frame.plot.scatter(x="x", y="y", ax=axes)
figure.savefig(io.BytesIO(), format="png")

# The image's smoke check (docker-examples/build.py runs this file): wrong figures exit non-zero.
assert abs(model.coef_[0] - 3) < 0.1 and rows == 200, (model.coef_[0], rows)
print(f"slope {model.coef_[0]:.2f}, intercept {model.intercept_:.2f}, r {r:.3f}, parquet rows {rows}")
