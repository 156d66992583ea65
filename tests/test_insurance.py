"""Assignment 2: the name rules, the encoding, the download, and the result against least squares."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import find_datasets, train

from shared.models import MODELS
from shared.models.tabular import INSURANCE_FEATURES, encode
from training.data import DataNotFound
from training.insurance_data import COLUMNS, customize, load_insurance, synthetic_rows


def numbered_rows(n: int = 200) -> list[dict]:
    return [dict(row, id=i) for i, row in enumerate(synthetic_rows(n, seed=0))]


def test_customize_follows_the_assignment():
    rows = numbered_rows()
    mine = customize(rows, "Lovelace")  # o = 111, v = 118, e = 101 (odd: region goes)
    assert len(mine) == int(0.95 * len(rows)) == 190
    assert len({row["id"] for row in mine}) == 190  # sampled without replacement
    for row in mine:
        original = rows[row["id"]]
        assert row["bmi"] == pytest.approx(original["bmi"] * 1.11)
        assert row["charges"] == pytest.approx(original["charges"] * 1.18)
        assert row["age"] == original["age"] and "region" not in row
    assert all("region" in row for row in customize(rows, "Alan"))  # n = 110, even: region stays
    # The sample is seeded by the first letter only.
    assert [r["id"] for r in customize(rows, "Lxyz")] == [r["id"] for r in mine]
    assert [r["id"] for r in customize(rows, "Mxyz")] != [r["id"] for r in mine]
    assert customize(rows, "") is rows
    with pytest.raises(ValueError, match="at least 4 characters"):
        customize(rows, "Ada")


def test_encoding_is_one_hot_with_a_baseline():
    rows = [{"age": 19.0, "sex": "female", "bmi": 27.9, "children": 0.0, "smoker": "yes", "region": "southwest"},
            {"age": 18.0, "sex": "male", "bmi": 33.77, "children": 1.0, "smoker": "no", "region": "northeast"}]
    features = encode(rows, INSURANCE_FEATURES)
    torch.testing.assert_close(features, torch.tensor([[19, 0, 27.9, 0, 1, 0, 0, 1], [18, 1, 33.77, 1, 0, 0, 0, 0]]))


def test_download_is_checked_and_atomic(tmp_path):
    table = "\n".join([",".join(COLUMNS), "19,female,27.9,0,yes,southwest,16884.924",
                       "18,male,33.77,1,no,southeast,1725.5523"])
    (tmp_path / "served.csv").write_text(table)
    rows = load_insurance(tmp_path / "data", url=(tmp_path / "served.csv").as_uri())
    assert rows[1] == {"age": 18.0, "sex": "male", "bmi": 33.77, "children": 1.0, "smoker": "no",
                       "region": "southeast", "charges": 1725.5523}
    assert [p.name for p in (tmp_path / "data" / "insurance").iterdir()] == ["insurance.csv"]

    # A page that is not the table is refused and leaves nothing behind; so does no network at all.
    (tmp_path / "page.html").write_text("<html>rate limited</html>")
    for url in ((tmp_path / "page.html").as_uri(), (tmp_path / "nowhere.csv").as_uri()):
        with pytest.raises(DataNotFound) as error:
            load_insurance(tmp_path / "empty", url=url)
        for text in (str(tmp_path / "empty" / "insurance" / "insurance.csv"), ",".join(COLUMNS), "--data-dir"):
            assert text in str(error.value)
        assert not list((tmp_path / "empty").rglob("*.csv*"))


def test_reloaded_model_keeps_the_encoding_and_standardisation(tmp_path):
    model = MODELS["insurance-regression"](feature_names=["age", "smoker=yes"], feature_means=[40.0, 0.2],
                                           feature_stds=[14.0, 0.4], target_mean=13_000.0, target_std=12_000.0)
    model.save_pretrained(tmp_path)
    reloaded = MODELS["insurance-regression"].from_pretrained(tmp_path)
    assert reloaded.feature_names == ["age", "smoker=yes"] and reloaded.target_std == 12_000.0
    features = torch.tensor([[19.0, 1.0], [64.0, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(features), model.eval()(features))


@pytest.fixture(scope="module")
def insurance_data():
    found = find_datasets("insurance")
    if found is None:
        pytest.skip("insurance/insurance.csv not found (set ZTG_DATA_DIR or put ../shared/datasets beside the repo)")
    return found


@pytest.mark.realdata
@pytest.mark.parametrize("name, rows, features", [("", 1338, INSURANCE_FEATURES),
                                                   ("Lovelace", 1271, INSURANCE_FEATURES[:5])])
def test_gradient_descent_lands_within_5_percent_of_least_squares(insurance_data, tmp_path, name, rows, features):
    metrics = train("insurance-regression", tmp_path, "--profile", "cpu", "--data-dir", str(insurance_data),
                    f"--customize={name}")
    assert metrics["train_rows"] + metrics["val_rows"] == rows and metrics["val_rows"] == int(0.15 * rows)
    assert metrics["val_l1_ratio"] <= 1.05, metrics
    config = json.loads((tmp_path / "insurance-regression" / "config.json").read_text())
    assert config["feature_names"] == features
    if name:  # bmi scaled by ord("o") / 100 = 1.11: the training mean moves with it
        assert 1.05 < config["feature_means"][2] / 30.66 < 1.17
