"""What a run of ``src/train.py`` and ``src/eval.py`` is made of, one concern a module: ``setup``
(directories, callbacks, the global batch), ``loggers`` (W&B and the others), ``checkpoints``
(which one to resume, test or evaluate), ``evaluation`` (eval's data config), ``report`` (the
final metrics)."""
