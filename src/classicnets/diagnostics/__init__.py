"""What a recipe will do before a GPU-week is spent on it: its learning-rate schedule
(``schedule``) and whether it learns at all on a few real images (``learning``)."""
