"""Code that training and the Spaces both need: model definitions and preprocessing.

A Space imports exactly what training used, so it sees inputs the way the model was trained.
"""
