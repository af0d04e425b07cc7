"""Bad input ends with a clear message and no run that looks successful."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from classicnets.data.common import DatasetNotFoundError
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.mnist import MNISTDataModule
from classicnets.run.setup import compose_config
from classicnets.training.module import ClassificationModule
from run_helpers import TINY, run_cli, run_script


def assert_failed_cleanly(result, run_dir: Path, *phrases: str) -> None:
    assert result.returncode != 0
    message = result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in message, message[-2000:]
    assert "Traceback" not in result.stderr
    assert not (run_dir / "metrics.json").exists()
    assert not list(run_dir.glob("checkpoints/*.ckpt"))


def test_unknown_model_config_lists_the_choices(tmp_path: Path) -> None:
    result = run_cli("train", "model=lenet6", f"hydra.run.dir={tmp_path}", check=False)
    assert_failed_cleanly(result, tmp_path, "lenet6", "Available options", "lenet5", "resnet50")
    assert result.returncode == 2


def test_unknown_registry_name_lists_the_models(tmp_path: Path) -> None:
    result = run_cli("train", "model.net.name=lenet6", f"hydra.run.dir={tmp_path}", check=False)
    assert_failed_cleanly(result, tmp_path, "unknown model 'lenet6'", "lenet5_modern")
    assert result.returncode == 2


def test_override_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="max_epoch"):
        compose_config("train", ["trainer.max_epoch=3"], tmp_path)


def test_missing_imagenet_says_how_to_prepare_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-imagenet"
    result = run_cli(
        "train",
        "model=alexnet",
        f"data.root={missing}",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert_failed_cleanly(result, tmp_path / "run", str(missing), "prepare_imagenet.py")
    assert result.returncode == 2
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_missing_full_mnist_says_where_to_put_it(tmp_path: Path) -> None:
    datamodule = MNISTDataModule(source="torchvision", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"MNIST/raw.*data\.download=true"):
        datamodule.setup("fit")


def test_missing_checkpoint_for_eval(tmp_path: Path) -> None:
    result = run_cli(
        "eval", f"ckpt_path={tmp_path}/none.ckpt", f"hydra.run.dir={tmp_path}", check=False
    )
    assert_failed_cleanly(result, tmp_path, "none.ckpt", "does not exist")


def test_eval_refuses_data_whose_classes_the_network_was_not_trained_on(
    fake_imagenet: Path, tmp_path: Path, eval_main, capsys: pytest.CaptureFixture[str]
) -> None:
    classes = ImageNetDataModule(fake_imagenet).classes
    model = ClassificationModule(net={"name": "resnet18"}, num_classes=len(classes), in_channels=3)
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    overrides = ["data=imagenet", f"data.root={fake_imagenet}", "data.num_workers=0"]
    for name, trained_on in (("same", classes), ("other", classes[::-1])):
        # what Lightning saves of the DataModule: the class mapping
        checkpoint["ImageNetDataModule"] = {"classes": trained_on, "class_names": trained_on}
        torch.save(checkpoint, tmp_path / f"{name}.ckpt")
        run_dir = tmp_path / name
        cfg = compose_config("eval", [*overrides, f"ckpt_path={tmp_path / name}.ckpt"], run_dir)
        if name == "same":
            eval_main(cfg)
            assert (run_dir / "metrics.json").is_file()
            continue
        with pytest.raises(SystemExit) as stop:
            eval_main(cfg)
        assert stop.value.code == 2 and not (run_dir / "metrics.json").exists()
        assert "error: the checkpoint was trained on 4 classes" in capsys.readouterr().err


def _truncated_checkpoint(path: Path) -> Path:
    """A checkpoint cut short, as by a copy between clusters or a full disk."""
    torch.save({"state_dict": {"w": torch.arange(10_000.0)}, "loops": {}}, path)
    path.write_bytes(path.read_bytes()[:5_000])
    return path


def _not_a_checkpoint(path: Path) -> Path:
    torch.save({"weights": torch.zeros(3)}, path)
    return path


# (script, overrides, what the line must say); {tmp} is the test's folder, {imagenet} a fake tree.
WRONG_VALUES = {
    "batch-size-0": ("train", ["data.batch_size=0"], "data.batch_size=0 is not allowed"),
    "eval-batch-negative": ("train", ["data.eval_batch_size=-4"], "data.eval_batch_size=-4"),
    "workers-negative": ("train", ["data.num_workers=-1"], "data.num_workers=-1"),
    "negative-lr-sdlm": ("train", ["model.optimizer.lr=-1"], "model.optimizer.lr=-1 is not"),
    "negative-lr-sgd": (
        "train",
        ["model=lenet5_modern", "model.optimizer.lr=-1"],
        "model.optimizer.lr=-1 is not allowed: use a number >= 0",
    ),
    "batch-over-devices": (
        "train",
        ["trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=3"],
        "data.batch_size=3 is not allowed: the global batch must divide evenly over the 2",
    ),
    "unknown-test-protocol": (
        "train",
        ["model=alexnet", "data.root={imagenet}", "data.test_protocol=nine_crop"],
        "data.test_protocol='nine_crop' is not allowed: choose from center_crop, ten_crop",
    ),
    "unknown-train-preset": (
        "train",
        ["model=alexnet", "data.root={imagenet}", "data.train_preset=inception"],
        "data.train_preset='inception' is not allowed: choose from alexnet, zfnet, vgg",
    ),
    "root-is-a-file": (
        "train",
        ["model=alexnet", "data.root={tmp}/not-a-checkpoint.ckpt"],
        "not-a-checkpoint.ckpt' is not allowed: it is a file; use a folder",
    ),
    "train-truncated-ckpt": (
        "train",
        ["ckpt_path={tmp}/truncated.ckpt"],
        "truncated.ckpt is not a readable checkpoint, it is truncated or damaged",
    ),
    "train-not-a-ckpt": (
        "train",
        ["ckpt_path={tmp}/not-a-checkpoint.ckpt"],
        "not-a-checkpoint.ckpt is not a training checkpoint of a classicnets run",
    ),
    "eval-truncated-ckpt": (
        "eval",
        ["ckpt_path={tmp}/truncated.ckpt"],
        "truncated.ckpt is not a readable checkpoint, it is truncated or damaged",
    ),
    "eval-not-a-ckpt": (
        "eval",
        ["ckpt_path={tmp}/not-a-checkpoint.ckpt"],
        "not-a-checkpoint.ckpt is not a checkpoint of a classicnets run",
    ),
}


@pytest.mark.parametrize("case", WRONG_VALUES, ids=list(WRONG_VALUES))
def test_a_wrong_value_ends_with_one_line_naming_it_and_exit_2(
    case: str,
    tmp_path: Path,
    fake_imagenet: Path,
    train_main,
    eval_main,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script, overrides, expected = WRONG_VALUES[case]
    _truncated_checkpoint(tmp_path / "truncated.ckpt")
    _not_a_checkpoint(tmp_path / "not-a-checkpoint.ckpt")
    overrides = [o.format(tmp=tmp_path, imagenet=fake_imagenet) for o in overrides]
    run_dir = tmp_path / "run"
    cfg = compose_config(script, [*overrides, "logger=none"], run_dir)
    with pytest.raises(SystemExit) as stop:  # anything but a user error would propagate here
        (train_main if script == "train" else eval_main)(cfg)
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], errors
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_a_sweep_job_with_a_wrong_value_fails_alone(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_script(
        "train",
        "-m",
        "data.batch_size=0,32",
        *TINY,
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        expect=2,
    )
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "1 sweep job(s) failed" in errors[0], result.stderr[-2000:]
    assert "data.batch_size=0 is not allowed" in (sweep / "0" / "error.txt").read_text()
    assert not (sweep / "0" / "metrics.json").exists()
    assert (sweep / "1" / "metrics.json").is_file()  # the other job went on


def test_an_optuna_trial_with_a_wrong_value_counts_as_the_worst_and_says_why(
    tmp_path: Path, train_main
) -> None:
    # The Optuna plugin cannot record a NaN as a failed trial: the worst value goes on instead.
    cfg = compose_config("train", ["hparams_search=lenet5_optuna", "data.batch_size=0"], tmp_path)
    assert train_main(cfg) == float("-inf")  # the search maximises
    assert "data.batch_size=0 is not allowed" in (tmp_path / "error.txt").read_text()
    assert not (tmp_path / "metrics.json").exists()
