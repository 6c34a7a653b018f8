"""Fixity: scheduled checks of every replica and repair from a good copy.

Empty for now: the replicated storage and fixity issue builds it on :mod:`archive.digest`
and :mod:`archive.storage`.
"""
