"""Migration: preservation planning and format migration pathways, as the format policy
(``policies/formats.toml``) declares them.

``plan.py`` (pure: what the policy asks for the files held), ``holdings.py`` (reads the
catalog), ``tools.py`` (finds and runs the programs, with time limits), ``probe.py``
(validators and FIDO), ``validate.py`` (checks an output), ``service.py`` (plan, run,
report), ``report.py`` (the HTML page), ``cli.py`` (``custos migrate``).
"""
