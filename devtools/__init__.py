"""Developer tools for local runs and tests (Azurite launcher, queue pump).

Never deployed; the product never imports this package.
"""
