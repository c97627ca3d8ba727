"""The zoo script: recipes for every model, overrides, and the guard that keeps a better shipped file."""

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from garbseg.core.paths import checkpoint_dir
from garbseg.models.checkpoints import export_checkpoint, read_metadata
from garbseg.models import list_models
from garbseg.models.registry import parse_model_name
from garbseg.train import TrainConfig
from scripts import train_zoo

ROOT = Path(__file__).resolve().parents[1]


def set_overrides(command: list[str]) -> dict[str, str]:
    """The KEY=VALUE pairs a train_zoo command passes with --set."""
    return dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "--set")


def study_row_overrides(study) -> list[dict[str, str]]:
    """Per row of an ablation study, the --set pairs of its train_zoo command for the study's first model."""
    from scripts import ablation

    return [set_overrides(ablation.train_command(study.models[0], None, runs, [*study.common, *overrides],
                                                 study.recipe))
            for _, runs, overrides in study.rows]


def test_every_model_has_a_recipe_in_every_set():
    for recipes in (train_zoo.CPU_RECIPES, train_zoo.GPU_RECIPES, train_zoo.TRASHNET_RECIPES):
        assert sorted(recipes) == sorted(list_models())
    trashnet = train_zoo.recipe("mobilenet_v3_large-fcn", "trashnet", {"copy_paste": 0.0})
    assert trashnet["extra_data"] == train_zoo.PSEUDO_LABELLED and trashnet["copy_paste"] == 0.0
    assert trashnet["teacher"] == "mobilenet_v2-lraspp"
    assert train_zoo.recipe("mobilenet_v2-lraspp", "trashnet", {})["teacher"] is None  # never its own pupil
    gpu = train_zoo.recipe("mobilenet_v2-lraspp", "gpu", {"lr": 5e-4})
    assert gpu["augment_on_device"] and gpu["backbone_init"] == "imagenet" and gpu["lr"] == 5e-4
    assert train_zoo.recipe("resnet50-fcn", "gpu", {})["output_stride"] == 16


def test_distilled_recipes_start_each_backbone_from_its_own_trunk():
    # The two backbones without ImageNet weights here; MobileNetV2 has them and needs no distilled trunk.
    assert sorted(train_zoo.DISTILLED_RECIPES) == [name for name in sorted(list_models())
                                                    if not name.startswith("mobilenet_v2-")]
    for name in train_zoo.DISTILLED_RECIPES:
        backbone, _ = parse_model_name(name)
        cfg = train_zoo.recipe(name, "distilled", {})
        # A distilled trunk, or the trunk of a shipped model of the same backbone (one that already segments).
        segmenting = (train_zoo.SEGMENTING_TRUNK, train_zoo.RESNET50_SEGMENTING_TRUNK)
        assert cfg["backbone_init"] in (train_zoo.DISTILLED_TRUNKS[backbone], *segmenting)
        assert cfg["backbone_init"].startswith((f"runs/pretrain/{backbone}-distill", f"checkpoints/{backbone}-"))
        assert cfg["teacher"] == "mobilenet_v2-lraspp" and cfg["extra_data"] == train_zoo.PSEUDO_LABELLED
        # A trunk that already segments learns slower than its new head, or the head's first steps undo it.
        if cfg["backbone_init"] in segmenting:
            assert cfg["backbone_lr_scale"] < 1
    assert train_zoo.recipe("resnet50-fcn", "distilled", {})["output_stride"] == 16


def test_set_rejects_unknown_fields():
    result = subprocess.run([sys.executable, "-m", "scripts.train_zoo", "--set", "learning_rate=1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "TrainConfig field" in result.stderr


def test_ship_never_replaces_a_better_file(tiny_run, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "mobilenet_v3_large-lraspp")
    monkeypatch.setenv("GARBSEG_CHECKPOINTS", str(tmp_path / "ship"))
    (tmp_path / "ship").mkdir()
    best = runs / "mobilenet_v3_large-lraspp" / "best.safetensors"
    run_miou = read_metadata(best).metrics["miou"]
    shipped = tmp_path / "ship" / "mobilenet_v3_large-lraspp.safetensors"
    export_checkpoint(best, shipped, training_metrics={"miou": run_miou + 0.1})  # a better file is there
    train_zoo.ship("mobilenet_v3_large-lraspp", runs)
    assert read_metadata(shipped).training_metrics["miou"] == pytest.approx(run_miou + 0.1)
    export_checkpoint(best, shipped, training_metrics={"miou": run_miou - 0.1})  # a worse one is replaced
    train_zoo.ship("mobilenet_v3_large-lraspp", runs)
    meta = read_metadata(shipped)
    assert meta.training_metrics["miou"] == pytest.approx(run_miou) and meta.stored_dtype == "float16"


def test_second_round_study_changes_only_the_pseudo_labels():
    from scripts import ablation, pseudo_label

    study = ablation.STUDIES["second-round"]
    start = "runs/round1/mobilenet_v3_large-lraspp.safetensors"
    control, second = (ablation.train_command(ablation.MODEL, start, runs, [*study.common, *overrides])
                       for _, runs, overrides in study.rows)
    assert study.continues_start and f"init_from={start}" in control and f"init_from={start}" in second
    differs = [arg for arg in second if arg not in control]
    assert differs == ["runs/abl-round2", f"extra_data={ablation.ROUND2_LABELS}"]
    # The second round's teachers are the students the first round trained, none of the first round's.
    first, later = pseudo_label.ROUNDS[1], pseudo_label.ROUNDS[2]
    assert set(later) <= set(list_models()) and not set(first) & set(later)
    assert all(name.startswith("mobilenet_v3_large-") for name in later)


def test_blends_study_runs_the_distilled_recipe_with_and_without_blends_for_each_head():
    from scripts import ablation

    study = ablation.STUDIES["blends"]
    assert study.recipe == "distilled" and not study.continues_start and len(study.models) == 2
    for model in study.models:
        without, blended = (ablation.train_command(model, None, runs, [*study.common, *overrides], study.recipe)
                            for _, runs, overrides in study.rows)
        assert without[without.index("--recipe") + 1] == "distilled" and "init_from" not in " ".join(without)
        assert [arg for arg in blended if arg not in without] == ["runs/fcn-trunk-mixup", "distill_mixup=0.5"]
        # Each command is the distilled recipe at 16 epochs (the runs' length), distill_mixup alone set either way.
        assert train_zoo.recipe(model, "distilled", {})["backbone_init"] == train_zoo.SEGMENTING_TRUNK
        for command, share in ((without, 0.0), (blended, 0.5)):
            sets = set_overrides(command)
            assert float(sets.pop("distill_mixup")) == share and sets == {"epochs": "16"}


def test_framing_study_changes_only_how_large_the_photo_is_squared_before_the_crop():
    from scripts import ablation

    study, blends = ablation.STUDIES["framing"], ablation.STUDIES["blends"]
    assert study.recipe == "distilled" and study.against_first and study.models == blends.models
    # Its first row is the blends study's blended run: one run, two tables.
    assert study.rows[0][1] == blends.rows[1][1]
    sizes = []
    for sets in study_row_overrides(study):
        sizes.append(int(sets.pop("resize")))
        assert sets == {"epochs": "16", "distill_mixup": "0.5"}  # the blended 16-epoch run, whatever the recipe
    assert sizes == [384, 288, 224]
    # Every row cuts the same 224 crop, never larger than the squared photo.
    assert train_zoo.recipe(study.models[0], "distilled", {}).get("size", TrainConfig.size) == 224 <= min(sizes)


def test_teachers_study_changes_only_who_teaches_and_its_teachers_ship():
    from scripts import ablation

    study, blends = ablation.STUDIES["teachers"], ablation.STUDIES["blends"]
    assert study.rows[0][1] == blends.rows[1][1]  # the blends study's blended run, taught by one file
    teachers = []
    for sets in study_row_overrides(study):
        teachers.append(train_zoo.set_value(sets.pop("teacher")))
        assert sets == {"epochs": "16", "distill_mixup": "0.5"}
    assert teachers[0] == train_zoo.recipe(study.models[0], "distilled", {})["teacher"]
    assert sorted(teachers[1]) == sorted(name for name in list_models() if name.startswith("mobilenet_v2-"))
    assert all((checkpoint_dir() / f"{name}.safetensors").is_file() for name in teachers[1])


def test_distillation_strength_study_changes_one_term_of_the_loss_per_row():
    from scripts import ablation

    study = ablation.STUDIES["distillation-strength"]
    assert study.rows[0][1] == ablation.STUDIES["blends"].rows[1][1] and study.against_first
    planned = []
    for sets in study_row_overrides(study):
        planned.append((float(sets.pop("distill_temperature")), float(sets.pop("distill_weight"))))
        assert sets == {"epochs": "16", "distill_mixup": "0.5"}
    # The first row is what the recipe runs; each other row moves one of the two from it.
    cfg = TrainConfig(model=study.models[0], data="-", **train_zoo.recipe(study.models[0], "distilled", {}))
    assert planned == [(cfg.distill_temperature, cfg.distill_weight), (2.0, 1.0), (1.0, 3.0)]


def test_lovasz_study_adds_only_the_lovasz_loss_to_the_blended_run_on_both_heads():
    from scripts import ablation

    study, blends = ablation.STUDIES["lovasz"], ablation.STUDIES["blends"]
    assert study.rows[0][1] == blends.rows[1][1] and study.models == blends.models and study.recipe == "distilled"
    weights = []
    for sets in study_row_overrides(study):
        weights.append(float(sets.pop("lovasz_weight")))
        assert sets == {"epochs": "16", "distill_mixup": "0.5"}
    assert weights == [0.0, 1.0]
    # Its first row trained before the loss existed: the weight it names must be what those runs did.
    assert TrainConfig.lovasz_weight == 0.0


def test_seed_studies_change_only_the_seed_or_only_the_lovasz_loss_at_the_other_seeds():
    from scripts import ablation

    seeds = ablation.STUDIES["seeds"]
    assert seeds.rows[0][1] == ablation.STUDIES["blends"].rows[1][1]  # seed 0 is the blended run itself
    planned = study_row_overrides(seeds)
    assert [sets.pop("seed") for sets in planned] == ["0", "1", "2"]
    assert planned[0] == planned[1] == planned[2] == {"epochs": "16", "distill_mixup": "0.5", "lovasz_weight": "0"}
    for seed in (1, 2):
        again = ablation.STUDIES[f"lovasz-seed-{seed}"]
        assert again.rows[0][1] == seeds.rows[seed][1]  # that seed's run opens the Lovász pair at that seed
        planned = study_row_overrides(again)
        assert [sets.pop("lovasz_weight") for sets in planned] == ["0", "1"]
        assert planned[0] == planned[1] == {"epochs": "16", "distill_mixup": "0.5", "seed": str(seed)}
    assert TrainConfig.seed == 0  # the blended run set no seed: the default is the seed 0 its row names


def test_last_epochs_miou_averages_the_training_logs_last_scores(tmp_path):
    from scripts import ablation

    history = [{"epoch": i, "val_miou": v} for i, v in enumerate([0.1, 0.2, 0.5, 0.6, 0.7], 1)]
    (tmp_path / "history.json").write_text(json.dumps(history))
    assert ablation.last_epochs_miou(tmp_path, count=3) == pytest.approx(0.6)
    assert ablation.last_epochs_miou(tmp_path, count=6) is None  # too few epochs: no figure, not a short mean
    assert ablation.last_epochs_miou(tmp_path / "missing", count=1) is None


def test_model_card_shows_the_last_epochs_column_only_for_studies_that_record_it(tmp_path):
    from scripts import model_card

    row = {"label": "run", "miou": 0.5, "miou_ci95": [0.4, 0.6], "epoch": 3, "epochs": 8, "command": "c"}
    record = {"model": "m", "studies": {
        "old": {"title": "old", "intro": "i", "rows": [row]},
        "new": {"title": "new", "intro": "i", "models": ["a", "b"], "last_epochs": 6,
                "rows": [{**row, "last_epochs_miou": 0.4567}, row]}}}
    (tmp_path / "ablation.json").write_text(json.dumps(record))
    lines = model_card.ablation_section(tmp_path / "ablation.json")
    assert "## Ablation: old (m)" in lines and "## Ablation: new (a, b)" in lines
    old_header, old_row, new_header, blended, plain = (line for line in lines if line.startswith("| run |"))
    assert old_header.count("|") == 7 and old_row.count("|") == 7 and "last 6 epochs" not in old_header
    assert new_header.count("|") == 8 and "last 6 epochs" in new_header
    column = new_header.split("|").index(" mean val mIoU, last 6 epochs ")
    assert blended.split("|")[column].strip() == "0.457" and plain.split("|")[column].strip() == "-"


@pytest.mark.parametrize("name", sorted(train_zoo.DISTILLED_RECIPES))
def test_shipped_files_made_by_the_distilled_recipe_record_exactly_that_recipe(name):
    """The README's reproduction runs `train_zoo MODEL --recipe distilled`: it must make what shipped."""
    recorded = read_metadata(checkpoint_dir() / f"{name}.safetensors").recipe
    if recorded.get("extra", {}).get("recipe_set") != "distilled":
        pytest.skip(f"{name} ships from another recipe set")
    planned = json.loads(json.dumps(asdict(TrainConfig(model=name, data="-", out="-",
                                                       **train_zoo.recipe(name, "distilled", {})))))
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    # Left out: paths, the run's notes, what the trainer resolves per machine or head (None, aux_loss).
    for key, value in planned.items():
        if key in ("data", "out", "extra", "aux_loss") or value is None:
            continue
        kept = recorded.get(key, defaults[key])
        if key == "teacher":
            kept = kept["checkpoint"]
        assert kept == value, f"{name}: {key} shipped as {kept!r}, the recipe says {value!r}"
