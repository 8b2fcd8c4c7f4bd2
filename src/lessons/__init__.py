"""Guided lessons: each step explains one idea and runs a small experiment on the project's own components."""
