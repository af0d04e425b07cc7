"""scripts/check_learning.py: the cheap recipes learn on real digits, a broken one is named with
exit 1, and the floors catch the vanishing signal of a deep net at N(0, 0.01)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from classicnets.diagnostics import learning
from run_helpers import load_script


@pytest.fixture(scope="module")
def check_learning() -> ModuleType:
    return load_script("check_learning")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder of this module's own: the digit tree is written into it once."""
    return tmp_path_factory.mktemp("data")


def figures(check_learning: ModuleType, *argv: str) -> learning.Figures:
    return check_learning.measure(check_learning.parse(list(argv)))


def test_lenet5_learns_the_digits_with_sdlm_per_pattern(check_learning: ModuleType) -> None:
    f = figures(check_learning, "model=lenet5", "check.passes=4")
    assert f.batch_size == 1  # never above the recipe's batch: SDLM's per-pattern updates
    assert f.input_shape == (1, 32, 32)
    assert f.steps == 32 * 4
    assert f.failures == []
    assert f.loss_last_pass < 0.7 * f.loss_first_pass


def test_lenet5_modern_learns_at_its_own_batch(
    check_learning: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["model=lenet5_modern", "check.batch_size=32", "check.images=64", "check.passes=100"]
    assert check_learning.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("lenet5_modern: learns (loss -")
    assert re.search(
        r"^  lr \(scaled to the batch\) +0\.01$", out, re.MULTILINE
    )  # the paper's batch


def test_a_recipe_that_cannot_move_its_weights_exits_1_and_says_why(
    check_learning: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        check_learning.main(["model=lenet5_modern", "model.optimizer.lr=0", "check.passes=2"]) == 1
    )
    verdict = capsys.readouterr().out.splitlines()[0]
    assert verdict.startswith("lenet5_modern: does NOT learn (")
    assert "first-layer step 0.00e+00 < 1e-06" in verdict and "loss cut 0% < 30%" in verdict


def test_imagenet_recipes_read_the_digits_as_jpegs_at_their_paper_input(
    check_learning: ModuleType, data_dir: Path
) -> None:
    f = figures(
        check_learning,
        "model=shufflenet_v2_x0_5",
        f"paths.data_dir={data_dir}",
        "check.images=8",
        "check.passes=1",
    )
    assert f.input_shape == (3, 224, 224)
    assert f.batch_size == 8 and f.steps == 1
    assert f.lr == pytest.approx(0.5 * 8 / 1024)  # the recipe's LR, by the linear rule
    assert all(math.isfinite(v) for v in (f.logit_spread, f.first_grad_norm, f.first_step))
    tree = data_dir / "mnist_jpeg"
    assert sorted(p.name for p in (tree / "train").iterdir()) == [f"digit{d}" for d in range(10)]
    counts = {split: len(list((tree / split).glob("*/*.JPEG"))) for split in ("train", "val")}
    assert counts == {"train": 300, "val": 50}
    written = (tree / "train" / "digit0").stat().st_mtime_ns
    assert learning.digit_tree(tree) == tree  # reused, not rewritten
    assert (tree / "train" / "digit0").stat().st_mtime_ns == written


def _deep_net(init: str) -> nn.Sequential:
    """13 3×3 convolutions and 3 linear layers, VGG-16's depth on 8×8 inputs."""
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, padding=1), nn.ReLU()]
    for _ in range(12):
        layers += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
    layers += [nn.Flatten(), nn.Linear(32 * 64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(256, 10))
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            if init == "paper":
                nn.init.normal_(m.weight, 0.0, 0.01)  # VGG section 3.1
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


def test_the_logit_floor_catches_sixteen_layers_at_n_0_001_not_he_init() -> None:
    torch.manual_seed(0)
    images, targets = torch.randn(16, 3, 8, 8), torch.arange(16) % 10
    paper, layer, grad = learning.init_signal(_deep_net("paper"), images, targets, 8)
    he, _, he_grad = learning.init_signal(_deep_net("he"), images, targets, 8)
    assert layer == "0.weight"
    assert paper < 1e-8 < learning.LOGIT_SPREAD_FLOOR < 1e-2 < he
    assert grad < 1e-8 < he_grad


def test_a_missing_tree_is_one_error_line(
    check_learning: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        check_learning.main(["model=resnet50", f"data.root={tmp_path / 'missing'}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.root ") and "does not exist" in err[0]


def test_all_prints_a_markdown_row_per_recipe_and_goes_on_past_one_that_does_not_build(
    check_learning: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_learning.main(["check.table=[lenet5_modern,no_such_net]", "check.passes=2"]) == 1
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].startswith("| recipe | input | batch | lr |") and rows[1].startswith("|---|")
    # lenet5_modern's row uses its FAMILIES settings (its own batch, 100 passes) over check.passes=2
    assert rows[2].startswith("| `lenet5_modern` | 32 | 32 | 0.01 |") and "| yes |" in rows[2]
    assert rows[3].startswith("| `no_such_net` | error: ") and "no_such_net" in rows[3]
    assert len(rows) == 4


def test_save_keeps_the_trained_net_and_init_from_starts_from_it(
    check_learning: ModuleType, tmp_path: Path
) -> None:
    """check.save writes a checkpoint of ours (VGG-11's is the net A of the VGG-16 row); a run
    started from it with model.init_from begins where the first one ended."""
    saved = tmp_path / "net.ckpt"
    argv = ["model=lenet5_modern", "check.batch_size=32", "check.images=64"]
    first = figures(check_learning, *argv, "check.passes=100", f"check.save={saved}")
    assert first.failures == [] and saved.is_file()
    again = figures(check_learning, *argv, "check.passes=2", f"model.init_from={saved}")
    assert again.loss_first_pass < 0.2 * first.loss_first_pass  # it starts trained
    assert again.logit_spread > 10 * first.logit_spread


def test_all_passes_a_row_that_must_be_caught_when_it_is(
    check_learning: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row with learns=False (VGG-16 at N(0, 0.01) from scratch) passes check.table when the
    floors catch it and fails it when they do not; a row that starts from net A without it says
    so."""
    frozen = ("model.optimizer.lr=0", "check.passes=2")  # cannot learn
    rows = (
        ("lenet5_modern", frozen, False),
        ("vgg16", (f"model.init_from={check_learning.NET_A}",)),
    )
    monkeypatch.setattr(check_learning, "FAMILIES", rows)
    assert (
        check_learning.main(
            ["check.table=[lenet5_modern]", "check.images=32", "check.batch_size=32"]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert "| caught, as it must be: first-layer step 0.00e+00 < 1e-06" in out[2]
    assert check_learning.main(["check.table=[vgg16]"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[2].startswith("| `vgg16` | error: starts from net A: run the vgg11 row first")
    learns = (
        ("lenet5_modern", ("check.batch_size=32", "check.images=64", "check.passes=100"), False),
    )
    monkeypatch.setattr(check_learning, "FAMILIES", learns)
    assert check_learning.main(["check.table=families"]) == 1
    assert "| NOT caught |" in capsys.readouterr().out


def test_the_vgg16_row_from_net_a_comes_after_the_vgg11_row_that_trains_it(
    check_learning: ModuleType,
) -> None:
    net_a = check_learning.NET_A
    rows = check_learning.FAMILIES
    saves = [i for i, row in enumerate(rows) if f"check.save={net_a}" in row[1]]
    starts = [i for i, row in enumerate(rows) if f"model.init_from={net_a}" in row[1]]
    assert [rows[i][0] for i in saves] == ["vgg11"] and [rows[i][0] for i in starts] == ["vgg16"]
    assert saves[0] < starts[0]
    assert "model.net.init=paper" in rows[starts[0]][1]  # section 3.1: the rest N(0, 0.01)
    named = check_learning.table_rows(["vgg11", "vgg16"])  # every row of each, in this order
    assert [row[0] for row in named] == ["vgg11"] * 2 + ["vgg16"] * 3
    assert named.index(rows[saves[0]]) < named.index(rows[starts[0]])


def test_gpu_learning_check_runs_its_vgg_rows_at_toy_sizes(tmp_path: Path) -> None:
    """scripts/gpu_learning_check.sh (the VGG rows at the paper's batch, for a GPU) with TINY=1:
    VGG-11 is kept as net A, and VGG-16 starts from it by section 3.1's rule."""
    import os
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_learning_check.sh"
    env = os.environ | {"TINY": "1", "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    verdicts = [
        line for line in (tmp_path / "learning.md").read_text().splitlines() if line[:3] == "vgg"
    ]
    assert [v.split(":")[0] for v in verdicts] == ["vgg11", "vgg16", "vgg16"]
    assert (tmp_path / "net_a.ckpt").is_file()
    log = (tmp_path / "learning.log").read_text()
    assert "init_from: copied 14 tensors (VGG §3.1: net A's first four convs and three FCs" in log


def test_check_learning_takes_overrides_only_and_says_so_for_a_flag(
    check_learning: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        check_learning.main(["model=lenet5", "--passes=2"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --passes=2: check_learning takes overrides only (key=value), e.g. "
        "check.passes=16 check.table=families; see --help"
    ]
    with pytest.raises(SystemExit) as exited:
        check_learning.main(["check.passes=0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: check.passes=0 is not allowed: use a positive integer"]
