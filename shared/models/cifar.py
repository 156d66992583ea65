"""CIFAR-10 classifiers (lessons 4 and 5, assignment 3). Inputs (B, 3, 32, 32), logits (B, 10)."""
