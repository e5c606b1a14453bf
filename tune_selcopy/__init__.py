"""tune_selcopy: Ray Tune sweeps of the "very selective copying" attention experiments."""
