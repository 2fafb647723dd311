"""The Dask engine: partitions on a LocalCluster (127.0.0.1, 2 workers) give the in-memory
model."""

import json

import numpy as np
import pandas as pd
import pytest
from test_stream import config, make_csv

from xent import api

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from xent.dask_engine import connect

    with connect(workers=2) as c:
        yield c


@pytest.mark.parametrize("holes", [False, True])
def test_dask_training_equals_in_memory(tmp_path, client, holes):
    frame = make_csv(tmp_path / "all.csv", n=3000, holes=holes)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_csv(tmp_path / f"part{i}.csv", index=False)
    extra = {"data.impute": "mean"} if holes else {}
    in_memory = api.train(config(tmp_path / "all.csv", **extra))
    on_dask = api.train(config(str(tmp_path / "part*.csv"), **{"data.engine": "dask", **extra}),
                        client=client)
    assert on_dask.summary["objective"] == pytest.approx(in_memory.summary["objective"],
                                                         rel=1e-10)
    assert np.allclose(on_dask.model.coef, in_memory.model.coef, atol=1e-7)
    assert on_dask.model.feature_names == in_memory.model.feature_names
    assert on_dask.summary["n_samples"] == 3000


def test_dask_with_validation_and_gradient_descent(tmp_path, client):
    make_csv(tmp_path / "d.csv", n=2000)
    settings = {"data.engine": "dask", "data.val_fraction": 0.2, "optim.optimizer": "nesterov",
                "optim.epochs": 30, "optim.tol": 0.0}
    run = api.train(config(tmp_path / "d.csv", **settings), client=client)
    assert 300 < run.summary["n_val"] < 500
    streamed = api.train(config(tmp_path / "d.csv", **dict(settings, **{
        "data.engine": "local", "data.stream": True})))
    # the same per-row split as streaming: the same run
    assert np.allclose(run.history.column("objective"), streamed.history.column("objective"),
                       rtol=1e-10)


def test_cli_trains_on_a_local_cluster(run, tmp_path):
    make_csv(tmp_path / "d.csv", n=1000)
    result = run("train", "d.csv", "--engine", "dask", "--workers", "2", "--optimizer",
                 "lbfgs", "-o", "r", "--json")
    assert result.exit_code == 0, result.output
    assert "Dask" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["val_accuracy"] > 0.8
    assert json.loads(run("eval", "r", "d.csv", "--json").stdout)["accuracy"] > 0.8
    batched = run("train", "d.csv", "--engine", "dask", "--batch-size", "32", "-o", "b")
    assert batched.exit_code == 2 and "mini-batches" in batched.stderr


def test_unreachable_scheduler_is_a_clear_error(run, tmp_path):
    pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}).to_csv(tmp_path / "d.csv", index=False)
    result = run("train", "d.csv", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9",
                 "-o", "r")
    assert result.exit_code == 1 and "cannot reach the Dask scheduler" in result.stderr
