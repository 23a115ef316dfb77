"""Profiles (edgedistill.compress.profiles): each stage's profile tables fill fields that exist, one way only, when
the stage runs; the fingerprint holds the resolved values."""

from __future__ import annotations

from dataclasses import replace

from edgedistill.compress.pipeline import fingerprint


def test_profile_tables_fill_fields_that_exist_and_only_one_way():
    from edgedistill.compress import profiles, teacher
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.distill import config as distill_config

    import dataclasses

    for module, cls in ((teacher, teacher.TeacherConfig), (distill_config, distill_config.DistillConfig)):
        assert tuple(module.PROFILES) == profiles.NAMES
        names = {f.name for f in dataclasses.fields(cls)} | {f.name for f in dataclasses.fields(DataConfig)}
        assert sorted({k for table in module.PROFILES.values() for k in table} - names) == []
    cfg = distill_config.DistillConfig(teacher_dir="t")
    assert cfg.epochs is None  # nothing is filled before the stage runs ...
    quick, full = cfg.resolved(), replace(cfg, profile="full").resolved()
    assert quick.epochs == distill_config.PROFILES["quick"]["epochs"]
    assert full.epochs == distill_config.PROFILES["full"]["epochs"]
    assert quick.data.max_train_samples == distill_config.PROFILES["quick"]["max_train_samples"]
    # ... so a profile changed afterwards never keeps the other profile's values
    assert replace(quick, profile="full").max_length == quick.max_length  # what was set stays set
    assert replace(teacher.TeacherConfig(), profile="full").resolved().max_length == \
        teacher.PROFILES["full"]["max_length"]
    # the fingerprint hashes the config as it runs: a profile's value is part of it
    assert fingerprint("student", cfg, []) == fingerprint("student", quick, [])
    assert fingerprint("student", cfg, []) != fingerprint("student", replace(cfg, profile="full"), [])
