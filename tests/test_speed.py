"""The speed tools: the two benchmarks run and print their figures, a compiled network trains,
checkpoints and evaluates like an eager one, and throughput reaches the logs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from classicnets.run.safe_load import load_file
from classicnets.run.setup import compose_config
from run_helpers import TINY, load_script

bench_step = load_script("bench_step")  # first: bench_train imports it as a top-level module
bench_train = load_script("bench_train")


def test_bench_step_prints_both_loops_and_the_overhead(capsys: pytest.CaptureFixture) -> None:
    bench_step.main(["--steps", "64", "--rounds", "1", *TINY[3:5]])  # lenet5, 2 Trainer steps
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if "ms/update" in line}
    plain, ours = (float(lines[key].split()[-2]) for key in ("plain", "our"))
    assert "updates/step=32" in out and plain > 0 and ours > 0
    overhead = float(out.split("overhead")[1].split()[0])
    assert overhead == pytest.approx(100 * (ours / plain - 1), abs=0.2)


def test_bench_train_writes_one_row_per_configuration(tmp_path: Path, fake_imagenet: Path) -> None:
    out = tmp_path / "bench.csv"
    common = ["--steps", "2", "--warmup", "1", "--csv", str(out)]
    bench_train.main(["model=lenet5_modern", "channels_last=true", "precision=bf16", *common])
    real = ["model=shufflenet_v2_x0_5", "data=real", f"data.root={fake_imagenet}"]
    bench_train.main([*real, "data.batch_size=2", "data.num_workers=1", *common])
    rows = list(csv.DictReader(out.open()))
    assert [(r["model"], r["data"], r["batch"]) for r in rows] == [
        ("lenet5_modern", "synthetic", "32"),
        ("shufflenet_v2_x0_5", "real", "2"),
    ]
    for row in rows:
        step, compute, wait = (float(row[k]) for k in ("step_ms", "fwd_bwd_ms", "data_wait_ms"))
        assert step == pytest.approx(compute + wait, abs=0.01) and compute > 0
        assert float(row["images_per_s"]) == pytest.approx(int(row["batch"]) * 1e3 / step, rel=0.01)
        assert float(row["peak_mem_mib"]) > 0
    assert rows[0]["precision"] == "bf16" and rows[0]["channels_last"] == "true"


def test_a_compiled_network_trains_checkpoints_eager_keys_and_evaluates(
    tmp_path: Path, train_main, eval_main, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        *TINY,
        "model=lenet5_modern",
        "model.compile=aot_eager",
        "logger=csv",
        "trainer.max_epochs=1",
        "callbacks.throughput.every_n_steps=2",
    ]
    with caplog.at_level("INFO"):
        train_main(compose_config("train", overrides, run_dir))
    assert "the first training step took" in caplog.text
    state = load_file(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    eager = torch.nn.Module()
    from classicnets.models import get_model

    eager.net = get_model("lenet5_modern")
    assert set(state) == set(eager.state_dict())  # no _orig_mod: loads into an eager module
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    rates = [float(r["perf/images_per_s"]) for r in rows if r.get("perf/images_per_s")]
    waits = [float(r["perf/data_wait"]) for r in rows if r.get("perf/data_wait")]
    assert len(rates) == 2 and all(r > 0 for r in rates)  # 5 steps: windows of 2
    assert all(0 <= w < 1 for w in waits)
    ckpt = f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    metrics = eval_main(compose_config("eval", [ckpt, *TINY[:4]], tmp_path / "eval"))
    assert 0 <= metrics["test/acc_top1"] <= 1
