"""One module per lesson; each defines `Config`, `PROFILES`, `TASK` and `train(run)`."""
