"""How a network is trained beyond the general module: LeNet-5's per-pattern updates."""
