"""DataModules, transforms and evaluation protocols."""
