"""What may be read, by whom and why: the access decision over the policy and each package's
rules (``rules``), reads of packages and files and their custody records (``reads``), tier
changes written as new versions (``records``), sunsets (``sunset``) and the two-registrar
reviews of protected identities (``reviews``)."""
