"""What a run is made of, one concern a module: ``setup`` (directories, callbacks, the global
batch), ``rundir`` (one run per directory: names, the lock, what a resume may change),
``launch`` (DDP's processes, SLURM), ``checkpoints``, ``resume`` and ``safe_load`` (which file to
resume, test or evaluate, written whole and read as data), ``allowlist`` (what a stored config
may build), ``errors`` and ``checks`` (bad input in one line), ``guards`` and ``finite`` (no
silent results), ``loggers``, ``report`` (the final metrics), ``compat`` (every private name of
a library we touch) and ``callbacks`` (what every run needs around the loop)."""
