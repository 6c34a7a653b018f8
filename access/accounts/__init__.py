"""Who is asking: users and their roles and tokens (``users``), sessions started with one TOTP
code (``sessions``), and the TOTP second factor itself (``totp``)."""
