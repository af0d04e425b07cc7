"""eval's data config: the training run's, with the command's data overrides read by Hydra."""

from __future__ import annotations

from pathlib import Path

from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from classicnets.study.evaluation import eval_data_config
from study_helpers import lenet_checkpoint


def test_data_overrides_delete_add_and_interpolate_on_the_checkpoints_data(
    tmp_path: Path,
) -> None:
    checkpoint = load_file(lenet_checkpoint(tmp_path / "a.ckpt"))
    overrides = [
        "ckpt_path=x",
        "~data.num_workers",
        "data.root=${paths.data_dir}/elsewhere",
        "+data.val_size=[100]",  # a key of the checkpoint's MNIST data, not of the default
    ]
    cfg = compose_config("eval", overrides, tmp_path / "run")
    data = eval_data_config(cfg, checkpoint)
    assert "num_workers" not in data
    assert data.root == f"{cfg.paths.data_dir}/elsewhere"
    assert list(data.val_size) == [100]  # typed as Hydra types it
    assert data.test_size == 500  # the rest is the checkpoint's
