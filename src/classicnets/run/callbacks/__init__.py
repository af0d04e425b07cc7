"""What every run needs around the loop: resumption, exiting together under DDP, the progress
bar, the stored config, throughput."""
