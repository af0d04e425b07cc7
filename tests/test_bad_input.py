"""Bad input ends with a clear message and no run that looks successful."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from classicnets.data.common import DatasetNotFoundError
from classicnets.data.imagenet import ImageNetDataModule
from classicnets.data.mnist import MNISTDataModule
from classicnets.module import ClassificationModule
from conftest import compose_config, run_cli


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
        "train", "model=alexnet", f"data.root={missing}", f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )  # fmt: skip
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
