"""The medical-cost data of assignment 2: read, downloaded when missing, customised by name.

    <data-dir>/insurance/insurance.csv    1,338 rows: age,sex,bmi,children,smoker,region,charges

Rows are dicts (column -> value) with the numeric columns as floats, the way the
assignment's data frame holds them; `shared.models.tabular.encode` turns them into
features. Only the standard library and torch: pandas is not a dependency.
"""

from __future__ import annotations

import csv
import os
import urllib.request
from pathlib import Path

import torch

from training.data import DataNotFound, unreachable

COLUMNS = ["age", "sex", "bmi", "children", "smoker", "region", "charges"]
NUMERIC = {"age", "bmi", "children", "charges"}
REGIONS = ["northeast", "northwest", "southeast", "southwest"]
# The same 1,338 rows as Kaggle's mirichoi0218/insurance, which the course downloads
# from a jovian.ml address; this public GitHub copy does not need an account.
INSURANCE_URL = "https://raw.githubusercontent.com/stedy/Machine-Learning-with-R-datasets/master/insurance.csv"


def load_insurance(data_dir: Path, url: str = INSURANCE_URL) -> list[dict]:
    """The rows of <data_dir>/insurance/insurance.csv, downloading it there first if missing."""
    path = Path(data_dir) / "insurance" / "insurance.csv"
    problem = None
    if not path.is_file():
        try:
            download(url, path)
        except Exception as error:  # offline, read-only, or not the file we expect
            problem = f"{error.__class__.__name__}: {error}"
    if not path.is_file():
        raise DataNotFound(_missing(path, url, problem))
    return read_csv(path.read_text())


def data_problem(data_dir: Path, url: str = INSURANCE_URL) -> str | None:
    """None when insurance.csv is under `data_dir` or can be downloaded now; else what to do."""
    path = Path(data_dir) / "insurance" / "insurance.csv"
    problem = None if path.is_file() else unreachable(url)
    return None if problem is None else _missing(path, url, problem)


def _missing(path: Path, url: str, problem: str | None) -> str:
    return (f"the medical-cost data was not found at {path}"
            + (f" and could not be downloaded from {url} ({problem})" if problem else "") + ".\n"
            f"Expected one CSV file, {path}, with the header line {','.join(COLUMNS)}.\n"
            "Point --data-dir (or $ZTG_DATA_DIR) at a folder that has insurance/insurance.csv, "
            "or run once with network access to download it there.")


def download(url: str, path: Path) -> None:
    """Fetch the CSV, check its header, and move it into place in one rename."""
    print(f"downloading {url} to {path} ...")
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode("utf-8")
    read_csv(text)  # refuses a page that is not this table before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)  # atomic: a cut download is never mistaken for the data
    finally:
        tmp.unlink(missing_ok=True)


def read_csv(text: str) -> list[dict]:
    lines = csv.DictReader(text.splitlines())
    if lines.fieldnames != COLUMNS:
        raise ValueError(f"insurance.csv should have the columns {','.join(COLUMNS)}; found {lines.fieldnames}")
    return [{k: float(v) if k in NUMERIC else v for k, v in row.items()} for row in lines]


def customize(rows: list[dict], name: str) -> list[dict]:
    """The assignment's `customize_dataset`: the learner's name makes the data their own.

    95% of the rows, sampled with the code of the first letter as seed (torch's generator,
    so not the rows pandas' `sample` would pick); `bmi` times the code of the second letter
    / 100; `charges` times the third's / 100; `region` dropped when the fourth's code is odd.
    An empty name leaves the data as it is.
    """
    if not name:
        return rows
    if len(name) < 4:
        raise ValueError(f"--customize needs at least 4 characters (the assignment reads the first four); got {name!r}")
    generator = torch.Generator().manual_seed(ord(name[0]))
    keep = torch.randperm(len(rows), generator=generator)[: int(0.95 * len(rows))]
    bmi_scale, charges_scale = ord(name[1]) / 100, ord(name[2]) / 100
    drop_region = ord(name[3]) % 2 == 1
    customised = []
    for i in keep.tolist():
        row = dict(rows[i], bmi=rows[i]["bmi"] * bmi_scale, charges=rows[i]["charges"] * charges_scale)
        if drop_region:
            del row["region"]
        customised.append(row)
    return customised


def synthetic_rows(n: int, seed: int) -> list[dict]:
    """Made-up rows in the same columns for the smoke profile: charges rise with age, bmi,
    children and, most of all, smoking, plus noise, so a linear model has something to learn."""
    g = torch.Generator().manual_seed(seed)

    def draw(low: int, high: int) -> list[int]:
        return torch.randint(low, high, (n,), generator=g).tolist()

    ages, children, sexes, regions = draw(18, 65), draw(0, 6), draw(0, 2), draw(0, 4)
    smokes = (torch.rand(n, generator=g) < 0.2).tolist()  # about the real data's 20% smokers
    bmis = (30 + 6 * torch.randn(n, generator=g)).tolist()
    noise = (3000 * torch.rand(n, generator=g)).tolist()
    return [{"age": float(age), "sex": ("female", "male")[sex], "bmi": bmi, "children": float(kids),
             "smoker": "yes" if smoker else "no", "region": REGIONS[region],
             "charges": 250 * age + 300 * (bmi - 30) + 500 * kids + 23_000 * smoker + extra}
            for age, sex, bmi, kids, smoker, region, extra
            in zip(ages, sexes, bmis, children, smokes, regions, noise, strict=True)]
