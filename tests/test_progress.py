"""The library's lines go to the installed reporter (stdout by default), never straight to print."""

import logging

from autonet_tf import progress, tasks
from autonet_tf.configs import TrainConfig


def test_a_run_reports_to_the_installed_reporter_and_not_to_stdout(tmp_path, capsys):
    lines = []
    previous = progress.set_reporter(lines.append)
    try:
        config = TrainConfig(model_dir=str(tmp_path), genotype="DARTS_V1", epochs=1,
                             batch_size=32, layers=3, init_channels=4, cutout_length=0,
                             max_steps_per_epoch=2, export=False)
        tasks.run(tasks.CNNTrainTask(config))
    finally:
        progress.set_reporter(previous)
    assert any(line.startswith("Building the network") and "done in" in line for line in lines)
    assert any(line.startswith("Network: cifar, 3 cells") for line in lines)
    assert any(line.startswith("Epoch 1/1 (learning_rate 0.025") for line in lines)
    assert any(line.startswith("  val loss") for line in lines)
    out = capsys.readouterr().out
    assert "Network: cifar" not in out and "val loss" not in out and "Building" not in out


def test_to_logging_and_silence(caplog):
    previous = progress.set_reporter(progress.to_logging())
    try:
        with caplog.at_level(logging.INFO, logger="autonet_tf"):
            progress.say("hello")
            with progress.note("waiting"):
                pass
        assert [r.getMessage() for r in caplog.records][:1] == ["hello"]
        assert any(r.getMessage().startswith("waiting ... done in") for r in caplog.records)
        progress.set_reporter(None)
        progress.say("nowhere")  # no reporter: nothing happens, no error
    finally:
        progress.set_reporter(previous)
    assert progress.set_reporter(previous) is previous
