"""The public search: its index, kept in the transaction of each change that alters what the
public may see, and its queries (``service``)."""
