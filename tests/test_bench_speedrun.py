"""bench/bench_cifar_speedrun.py keeps each run in a folder and reads it back instead of training it again."""

from __future__ import annotations

from dataclasses import asdict

from bench.bench_cifar_speedrun import BASES, folder, groups, setting


def test_each_kept_folder_holds_one_setting():
    # A folder that two runs of different settings share would be trained again by whichever group runs
    # next, each time deleting the other's results (the muon group's curve and the ablation's base once did).
    kept: dict[str, tuple[str, dict]] = {}
    for base in BASES:
        for runs in groups(*BASES[base]).values():
            for name, command in runs.items():
                settings = asdict(setting(command))
                first, first_settings = kept.setdefault(folder(name, "no"), (name, settings))
                assert first_settings == settings, f"{name!r} and {first!r} share a folder with other settings"
