"""Writes the small CSVs in data/ (run from the repository root: python data/make_data.py).

iris.csv           scikit-learn's iris, species by name (3 classes, 4 numeric features)
breast_cancer.csv  scikit-learn's breast cancer set, diagnosis by name (2 classes, 30 features)
fruit.csv          a made-up set with two categorical columns and a non-ASCII level
                   (3 classes): shows one-hot encoding of text columns
"""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_iris

HERE = Path(__file__).parent


def export(bunch, label: str, path: Path) -> None:
    frame = pd.DataFrame(bunch.data, columns=bunch.feature_names)
    frame[label] = np.asarray(bunch.target_names)[bunch.target]
    frame.to_csv(path, index=False, float_format="%.6g")


def fruit(n: int = 300, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["apple", "banana", "orange"], size=n, p=[0.4, 0.3, 0.3])
    weight = np.where(kinds == "apple", 180, np.where(kinds == "banana", 120, 200))
    length = np.where(kinds == "banana", 18.0, 7.5)
    colour_by_kind = {
        "apple": (["red", "green", "yellow"], [0.6, 0.3, 0.1]),
        "banana": (["yellow", "green"], [0.8, 0.2]),
        "orange": (["orange", "yellow", "green"], [0.85, 0.1, 0.05]),
    }
    colour = [str(rng.choice(colour_by_kind[k][0], p=colour_by_kind[k][1])) for k in kinds]
    origin = rng.choice(["España", "Italy", "Morocco", "Ecuador"], size=n)
    return pd.DataFrame(
        {
            "weight_g": np.round(weight + rng.normal(0, 25, n), 1),
            "length_cm": np.round(length + rng.normal(0, 1.5, n), 2),
            "colour": colour,
            "origin": origin,
            "fruit": kinds,
        }
    )


if __name__ == "__main__":
    export(load_iris(), "species", HERE / "iris.csv")
    export(load_breast_cancer(), "diagnosis", HERE / "breast_cancer.csv")
    fruit().to_csv(HERE / "fruit.csv", index=False)
