"""Test support that users and our own tests share, as ``bytewax.testing``: generators of
inputs and the checks on what the streaming path made of them. Product code never imports it.
"""
