"""Training: the architecture-agnostic LightningModule (``module``), LeNet-5's per-pattern updates
(``per_pattern``, which its recipes select) and the recipe callbacks (``callbacks``)."""
