"""Retraining that closes the loop: evidence -> policy -> fresh candidate -> gates -> canary."""
