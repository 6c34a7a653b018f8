"""Tier keys no single person holds: the age key protected copies are encrypted to, split
into SLIP-39 shares among registrars (``shares``), made, shared anew and opened together
(``service``), and the ``custos keys`` commands (``cli``)."""
