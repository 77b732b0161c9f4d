"""The shipped configuration files, installed as the package ``mskus_configs``.

Only data lives here; :mod:`pipeline.resources` finds the files with
:mod:`importlib.resources`, so an installed wheel reads the same files as a
source checkout.
"""
