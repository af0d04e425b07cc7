"""classicnets' Hydra launcher: sweeps that fill a node (node_launcher.NodeLauncher)."""
